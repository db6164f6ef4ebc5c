"""The checks of python_client_test.py, against a running dsv2-coordinator (demo checkpoint).

Each check_* function raises Failure (from the test) through `check` and prints PASS lines.
"""

import re
import threading
import time


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def log(msg):
    print(msg, flush=True)


class Api:
    """The generated modules and stubs over one channel."""

    def __init__(self, grpc, pb, pb_grpc, health_pb2, health_grpc, channel):
        self.grpc = grpc
        self.pb = pb
        self.health_pb2 = health_pb2
        self.stub = pb_grpc.InferenceStub(channel)
        self.health = health_grpc.HealthStub(channel)

    def generate(self, request, timeout=120):
        """Streams a Generate; returns [(arrival_s, response)]."""
        start = time.monotonic()
        return [(time.monotonic() - start, r) for r in self.stub.Generate(request, timeout=timeout)]

    def greedy(self, max_new, request_id="", **prompt):
        pb = self.pb
        return pb.GenerateRequest(
            request_id=request_id, sampling=pb.SamplingParams(temperature=0.0),
            stopping=pb.StoppingCriteria(max_new_tokens=max_new, ignore_eos=True), **prompt)

    def expect_error(self, what, code, field, call):
        try:
            result = call()
            if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
                list(result)
        except self.grpc.RpcError as e:
            check(e.code() == code, f"{what}: expected {code.name}, got {e.code().name}: "
                                    f"{e.details()}")
            check(field in e.details(), f"{what}: the message {e.details()!r} does not name "
                                        f"{field!r}")
            log(f"PASS: {what} -> {e.code().name}: {e.details()}")
            return
        raise Failure(f"{what}: expected {code.name}, the call succeeded")


def ids_of(responses):
    return [i for _, r in responses for i in r.token_ids]


def text_of(responses):
    return "".join(r.text for _, r in responses)


def check_stream_shape(api, responses, what, request_id, max_new, prompt_tokens, finish):
    """The streaming contract of GenerateResponse; returns the final response."""
    pb = api.pb
    check(responses, f"{what}: the stream carried no response")
    for i, (_, r) in enumerate(responses):
        check(r.request_id == request_id if request_id else r.request_id != "",
              f"{what}: response {i} has request_id {r.request_id!r} (sent {request_id!r}; "
              "the server assigns one when empty)")
        last = i == len(responses) - 1
        if not last:
            check(r.finish_reason == pb.FINISH_REASON_UNSPECIFIED,
                  f"{what}: response {i} of {len(responses)} has finish_reason "
                  f"{pb.FinishReason.Name(r.finish_reason)} before the last")
            check(not r.HasField("usage"), f"{what}: response {i} has usage before the last")
            check(r.token_ids, f"{what}: non-final response {i} carries no tokens")
    final = responses[-1][1]
    check(final.finish_reason == finish, f"{what}: finish_reason "
          f"{pb.FinishReason.Name(final.finish_reason)}, expected {pb.FinishReason.Name(finish)}")
    check(final.HasField("usage"), f"{what}: the last response has no usage")
    n = len(ids_of(responses))
    check(final.usage.completion_tokens == n,
          f"{what}: usage.completion_tokens {final.usage.completion_tokens} != {n} streamed ids")
    if max_new is not None:
        check(n == max_new, f"{what}: {n} tokens streamed, max_new_tokens was {max_new}")
    if prompt_tokens is not None:
        check(final.usage.prompt_tokens == prompt_tokens,
              f"{what}: usage.prompt_tokens {final.usage.prompt_tokens} != {prompt_tokens}")
    t = final.timings
    check(t.time_to_first_token_ms > 0 and t.total_ms >= t.time_to_first_token_ms,
          f"{what}: implausible timings {t}")
    return final


def check_health_and_info(api):
    hp = api.health_pb2
    r = api.health.Check(hp.HealthCheckRequest(service=""), timeout=10)
    check(r.status == hp.HealthCheckResponse.SERVING,
          f"Health/Check(''): {hp.HealthCheckResponse.ServingStatus.Name(r.status)}")
    log("PASS: Health/Check('') is SERVING")
    api.expect_error("Health/Check('no.such.Service')", api.grpc.StatusCode.NOT_FOUND, "",
                     lambda: api.health.Check(hp.HealthCheckRequest(service="no.such.Service"),
                                              timeout=10))
    info = api.stub.GetModelInfo(api.pb.GetModelInfoRequest(), timeout=10)
    check(info.model_type == "deepseek_v2", f"model_type {info.model_type!r}")
    check(info.demo_model, "demo_model is false for the built-in demo checkpoint")
    check(info.has_tokenizer, "the demo checkpoint has no tokenizer")
    check(info.vocab_size > 0 and info.num_layers > 0 and info.hidden_size > 0,
          f"implausible shapes: {info}")
    check(info.max_context_tokens > 0 and info.max_new_tokens_limit > 0, f"no limits: {info}")
    check(info.stats.cache_pages_total > 0 and info.stats.page_size > 0, f"no cache: {info}")
    log(f"PASS: GetModelInfo: {info.model_type}, {info.num_layers} layers, vocab "
        f"{info.vocab_size}, device {info.device!r}, {info.stats.cache_pages_total} cache pages")
    return info


def check_text_generation(api, info):
    pb = api.pb
    prompt = "Hello world"
    tok = api.stub.Tokenize(pb.TokenizeRequest(text=prompt), timeout=10)
    check(tok.ids and len(tok.ids) == len(tok.tokens), f"Tokenize({prompt!r}): {tok}")
    check(all(0 <= i < info.vocab_size for i in tok.ids), "Tokenize: ids outside the vocab")
    log(f"PASS: Tokenize({prompt!r}) -> {list(tok.ids)}")

    max_new = 16
    first = api.generate(api.greedy(max_new, "py-text-1", text=prompt))
    check_stream_shape(api, first, "greedy text", "py-text-1", max_new, len(tok.ids),
                       pb.FINISH_REASON_LENGTH)
    text = text_of(first)
    log(f"PASS: greedy text stream: {len(first)} messages, {max_new} tokens, text {text!r}")
    log("      arrivals (ms): " + " ".join(f"{t * 1e3:.0f}" for t, _ in first))

    # The same request again, and its token-id twin: the same tokens and the same text.
    again = api.generate(api.greedy(max_new, text=prompt))
    check_stream_shape(api, again, "greedy text (no request_id)", "", max_new, len(tok.ids),
                       pb.FINISH_REASON_LENGTH)
    check(ids_of(again) == ids_of(first) and text_of(again) == text,
          f"greedy is not repeatable: {ids_of(first)} vs {ids_of(again)}")
    by_ids = api.generate(api.greedy(max_new, token_ids=pb.TokenIds(ids=tok.ids)))
    check(ids_of(by_ids) == ids_of(first) and text_of(by_ids) == text,
          f"token-id prompt differs from its text: {ids_of(first)} vs {ids_of(by_ids)}")
    log("PASS: greedy repeats exactly, and the token-id prompt gives the same tokens and text")

    # A stop string taken from the text: the stream ends with the text before its first match.
    m = re.search(r"[A-Za-z]{2,}", text[1:])
    if m is None:
        log(f"NOTE: stop-string check not run: no ASCII word in {text!r}")
        return
    stop = m.group(0)[:3]
    expected = text[:text.find(stop)]
    req = api.greedy(max_new, "py-stop", text=prompt)
    req.stopping.stop.append(stop)
    stopped = api.generate(req)
    final = check_stream_shape(api, stopped, f"stop {stop!r}", "py-stop", None, len(tok.ids),
                               pb.FINISH_REASON_STOP)
    check(text_of(stopped) == expected,
          f"stop {stop!r}: streamed {text_of(stopped)!r}, expected {expected!r}")
    check(final.usage.completion_tokens <= max_new, "stop: too many tokens")
    log(f"PASS: stop string {stop!r} ends the stream with {expected!r} (finish STOP)")


def check_chat_and_logprobs(api):
    pb = api.pb
    req = api.greedy(6, "py-chat", chat=pb.ChatMessages(messages=[
        pb.ChatMessage(role="system", content="You are terse."),
        pb.ChatMessage(role="user", content="Say hi.")]))
    req.logprobs.enabled = True
    req.logprobs.top_logprobs = 3
    out = api.generate(req)
    final = check_stream_shape(api, out, "chat", "py-chat", 6, None, pb.FINISH_REASON_LENGTH)
    check(final.usage.prompt_tokens > 4, f"chat: prompt_tokens {final.usage.prompt_tokens}")
    for _, r in out:
        check(len(r.logprobs) == len(r.token_ids), "chat: one TokenLogprobs per token expected")
        for tid, lp in zip(r.token_ids, r.logprobs):
            check(lp.chosen.token_id == tid and lp.chosen.logprob <= 0 and len(lp.top) == 3,
                  f"chat: bad logprobs {lp}")
            check(lp.top[0].logprob >= lp.top[-1].logprob, f"chat: top not sorted: {lp}")
    log(f"PASS: chat with logprobs: prompt {final.usage.prompt_tokens} tokens, "
        f"text {text_of(out)!r}")


def check_invalid_arguments(api):
    pb = api.pb
    code = api.grpc.StatusCode.INVALID_ARGUMENT
    bad = api.greedy(4, text="Hello")
    bad.stopping.max_new_tokens = 0
    api.expect_error("Generate(max_new_tokens=0)", code, "max_new_tokens",
                     lambda: api.stub.Generate(bad, timeout=30))
    api.expect_error("Generate(no prompt)", code, "prompt",
                     lambda: api.stub.Generate(pb.GenerateRequest(), timeout=30))
    api.expect_error("Generate(text='')", code, "text",
                     lambda: api.stub.Generate(api.greedy(4, text=""), timeout=30))
    api.expect_error("Generate(token id past the vocab)", code, "token_ids",
                     lambda: api.stub.Generate(api.greedy(4, token_ids=pb.TokenIds(
                         ids=[1, 1 << 30])), timeout=30))
    api.expect_error("Tokenize(no input)", code, "input",
                     lambda: api.stub.Tokenize(pb.TokenizeRequest(), timeout=30))


def check_concurrency_and_cancel(api):
    pb = api.pb
    results, errors = {}, []

    def one(k):
        try:
            results[k] = api.generate(api.greedy(8 + k, f"py-conc-{k}", text=f"Request {k}"))
        except Exception as e:  # reported below
            errors.append(f"request {k}: {e}")

    threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not errors, "concurrent requests failed: " + "; ".join(errors))
    for k in range(4):
        check_stream_shape(api, results[k], f"concurrent {k}", f"py-conc-{k}", 8 + k, None,
                           pb.FINISH_REASON_LENGTH)
    log("PASS: 4 concurrent streams, each complete and well-formed")

    before = api.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).stats
    call = api.stub.Generate(api.greedy(4000, "py-cancel", text="A long one"), timeout=120)
    got = [next(call) for _ in range(3)]
    call.cancel()
    check(all(r.token_ids for r in got), "cancel: the first responses carry no tokens")
    stats = wait_idle(api)
    check(stats.requests_cancelled == before.requests_cancelled + 1,
          f"cancel: requests_cancelled {before.requests_cancelled} -> "
          f"{stats.requests_cancelled}, expected one more")
    log(f"PASS: a cancelled stream is dropped by the server (stats: {stats.requests_cancelled} "
        f"cancelled, {stats.requests_finished} finished)")


def wait_idle(api, timeout_s=10):
    """Stats once nothing runs and every cache page is free again (fails after timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        s = api.stub.GetModelInfo(api.pb.GetModelInfoRequest(), timeout=10).stats
        if s.running_sequences == 0 and s.waiting_requests == 0 and \
                s.cache_pages_free == s.cache_pages_total:
            return s
        if time.monotonic() > deadline:
            raise Failure(f"the server did not go idle within {timeout_s} s: {s}")
        time.sleep(0.05)


def run_all(api):
    info = check_health_and_info(api)
    check_text_generation(api, info)
    check_chat_and_logprobs(api)
    check_invalid_arguments(api)
    check_concurrency_and_cancel(api)
    stats = wait_idle(api)
    log(f"PASS: idle afterwards with all {stats.cache_pages_total} cache pages free "
        f"({stats.requests_finished} finished, {stats.steps} steps)")
    check_health_and_info(api)
