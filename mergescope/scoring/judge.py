"""LLM judges over any OpenAI-compatible chat-completions endpoint: client, session, reply formats, grading.

- `ChatClient` posts to URL/chat/completions with a timeout, and retries with exponential backoff on 429,
  5xx, timeouts, connection errors and malformed bodies; a 401/403 fails at once with a clear message.
  The API key comes from an environment variable and is only ever put in the request header.
- A request asks for the rubric's `judge_max_tokens` (or `--judge-max-tokens`) reply tokens, fewer where the
  judge's context leaves less room: servers that report `max_model_len` in /v1/models (vLLM) are asked how
  long each prompt is (vLLM's /tokenize). A prompt that cannot fit at all is a one-line error naming both numbers.
- `JudgmentCache` (judge_cache.py) keeps every raw reply in a SQLite file under a hash of (judge model, rubric
  name and version, mode, question, answers, sample index, temperature, reply format), so a rerun sends no
  request twice.
- `grade` (absolute, all criteria in one call) and `compare` (pairwise, both orders) turn replies into
  `Judgment` / `Comparison` records; an unreadable reply is a missing score with its raw text kept.
- With `logprobs` > 0 the judge is asked for each token's top alternatives, kept with the reply, and each
  judgment also gets its probability-weighted score (`judge_parse.expected_score`).
- Reply format: under "auto" (the default) the judge is asked for replies constrained to the rubric's JSON
  schema (`response_format` json_schema: vLLM's structured outputs) where its server takes them, else for
  free text. A one-token probe with the schema settles it once per rubric, judge and URL (kept in the cache):
  accepted -> "structured"; HTTP 4xx while the probe without the schema is answered -> "free_text". A probe,
  because the format must be known before any cache key (which names it) is made, and servers word their
  refusals differently. A server that ignores `response_format` silently counts as "structured" (asked for
  and accepted, not proven enforced); both are parsed alike. "structured" / "free_text" force a format.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from mergescope.errors import ConfigError, MergescopeError
from mergescope.runs.records import Answer, Comparison, Judgment, ReplyFormat
from mergescope.scoring.judge_cache import ChatReply, JudgmentCache
from mergescope.scoring.judge_parse import ReplyToken, expected_score, parse_grades, parse_verdict
from mergescope.scoring.rubric import PAIRWISE_SCHEMA, Rubric, grading_messages, grading_schema, pairwise_messages

DEFAULT_API_KEY_ENV = "MERGESCOPE_JUDGE_API_KEY"
RETRY_STATUSES = {408, 409, 425, 429}
MAX_BACKOFF_S = 30.0
ReplyFormatChoice = Literal["auto", "structured", "free_text"]  # "auto": structured where the server takes it
# The reply-format probe: one token asked with the rubric's schema (the content does not matter).
PROBE_MESSAGES = ({"role": "user", "content": "Reply with a JSON object."},)


@dataclass(frozen=True)
class JudgeEndpoint:
    """Where the judge is served and how to talk to it."""

    url: str
    model: str
    api_key_env: str = DEFAULT_API_KEY_ENV
    temperature: float = 0.0
    max_tokens: int | None = None  # None: each rubric's judge_max_tokens
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    concurrency: int = 4
    logprobs: int = 0  # top alternatives asked per token (0: none); the endpoint must support `top_logprobs`
    reply_format: ReplyFormatChoice = "auto"

    @property
    def api_url(self) -> str:
        """The API's root, e.g. http://host:8000/v1 (`url` without a trailing /chat/completions)."""
        return self.url.rstrip("/").removesuffix("/chat/completions")

    @property
    def completions_url(self) -> str:
        return f"{self.api_url}/chat/completions"

    @property
    def tokenize_url(self) -> str:
        """vLLM's prompt-counting route, which sits beside /v1 rather than under it."""
        return f"{self.api_url.removesuffix('/v1')}/tokenize"

    def reply_tokens(self, rubric: Rubric) -> int:
        """The reply budget asked for with every request about `rubric`."""
        return self.max_tokens or rubric.judge_max_tokens


class JudgeUnavailable(MergescopeError):
    """The judge endpoint kept failing after every retry (down, overloaded, or answering garbage)."""


class PromptTooLong(JudgeUnavailable):
    """One prompt (its answers included) is longer than the judge's context: that request cannot be sent."""


class RequestRefused(JudgeUnavailable):
    """The judge answered HTTP 4xx (other than auth and rate limits): the same request would be refused again."""


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI `response_format` asking for a reply that is an instance of `schema`."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


# Asking the server about its context must not hold a run up for a judge's full reply timeout.
PROBE_TIMEOUT_S = 10.0


def backoff_delay(backoff_s: float, attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): doubling from `backoff_s`, capped."""
    return min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)


class ChatClient:
    """A blocking chat-completions client, safe to share between threads."""

    def __init__(self, endpoint: JudgeEndpoint):
        self.endpoint = endpoint
        self.key_sent = bool(os.environ.get(endpoint.api_key_env))
        headers = {"Authorization": f"Bearer {os.environ[endpoint.api_key_env]}"} if self.key_sent else {}
        self._http = httpx.Client(timeout=endpoint.timeout_s, headers=headers)

    def complete(
        self, messages: list[dict[str, str]], seed: int, max_tokens: int, constraint: dict[str, Any] | None = None
    ) -> ChatReply:
        """The judge's reply to `messages` (empty text when it answered with no content), constrained by the
        `response_format` `constraint` where one is given."""
        payload = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": self.endpoint.temperature,
            "max_tokens": max_tokens,
            "seed": seed,
        }
        if self.endpoint.logprobs:
            payload |= {"logprobs": True, "top_logprobs": self.endpoint.logprobs}
        if constraint is not None:
            payload["response_format"] = constraint
        reason = "no attempt made"
        for attempt in range(self.endpoint.max_retries + 1):
            if attempt:
                time.sleep(backoff_delay(self.endpoint.backoff_s, attempt))
            try:
                response = self._http.post(self.endpoint.completions_url, json=payload)
            except httpx.TimeoutException:
                reason = f"no reply within {self.endpoint.timeout_s:g}s"
                continue
            except httpx.TransportError as error:
                reason = f"cannot connect ({type(error).__name__})"
                continue
            reply, reason = self._reply(response, structured=constraint is not None)
            if reply is not None:
                return reply
        raise JudgeUnavailable(
            f"judge {self.endpoint.completions_url} failed {self.endpoint.max_retries + 1} times; last: {reason}",
            hint="check that the server is up and serves --judge-model",
        )

    def _reply(self, response: httpx.Response, structured: bool) -> tuple[ChatReply | None, str]:
        """(reply, "") for a good response, (None, why) for one worth retrying; raises for the rest."""
        status = response.status_code
        if status in (401, 403):
            raise ConfigError(self._auth_message(status), hint=f"set {self.endpoint.api_key_env} to a valid key")
        if status in RETRY_STATUSES or status >= 500:
            return None, f"HTTP {status}"
        if status >= 400:
            hint = "check --judge-model and --judge-url" + (
                ", or pass --judge-reply-format free_text" if structured else ""
            )
            raise RequestRefused(
                f"judge {self.endpoint.completions_url} refused the request: HTTP {status} "
                f"{' '.join(response.text.split())[:200]}",
                hint=hint,
            )
        try:
            choice = response.json()["choices"][0]
            return ChatReply(choice["message"]["content"] or "", _tokens(choice.get("logprobs"))), ""
        except (ValueError, KeyError, IndexError, TypeError):
            return None, f"malformed response body: {' '.join(response.text.split())[:120]!r}"

    def context_length(self) -> int | None:
        """The judge model's context in tokens where /v1/models reports it (vLLM's `max_model_len`), else None."""
        try:
            response = self._http.get(f"{self.endpoint.api_url}/models", timeout=PROBE_TIMEOUT_S)
            entries = response.json().get("data", []) if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        entry = next((e for e in entries if isinstance(e, dict) and e.get("id") == self.endpoint.model), {})
        length = entry.get("max_model_len")
        return length if isinstance(length, int) and length > 0 else None

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """The prompt length of `messages` in the judge's tokens where the server counts them (vLLM), else None."""
        payload = {"model": self.endpoint.model, "messages": messages, "add_generation_prompt": True}
        try:
            response = self._http.post(self.endpoint.tokenize_url, json=payload, timeout=PROBE_TIMEOUT_S)
            count = response.json().get("count") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return count if isinstance(count, int) else None

    def _auth_message(self, status: int) -> str:
        sent = (
            f"the key in ${self.endpoint.api_key_env} was rejected"
            if self.key_sent
            else f"no key was sent (${self.endpoint.api_key_env} is not set)"
        )
        return f"judge {self.endpoint.completions_url} answered HTTP {status}: {sent}"

    def close(self) -> None:
        self._http.close()


def _tokens(logprobs: dict | None) -> tuple[ReplyToken, ...]:
    """The reply's tokens from an OpenAI `logprobs` object ({"content": [{token, logprob, bytes, top_logprobs}]})."""

    def n_bytes(entry: dict) -> int:
        return len(entry["bytes"]) if entry.get("bytes") is not None else len(entry["token"].encode())

    return tuple(
        ReplyToken(
            entry["token"],
            tuple((alt["token"], float(alt["logprob"])) for alt in entry.get("top_logprobs") or ()),
            n_bytes(entry),
        )
        for entry in (logprobs or {}).get("content") or ()
    )


@dataclass(frozen=True)
class JudgeRequest:
    """One chat request to the judge and the cache key of its reply."""

    key: str
    messages: tuple[dict[str, str], ...]
    sample: int
    max_tokens: int  # the reply budget asked for; capped by the judge's context when sent
    constraint: dict[str, Any] | None = None  # the `response_format` of a structured request


def cache_key(
    endpoint: JudgeEndpoint,
    rubric: Rubric,
    mode: str,
    question: str,
    answers: tuple[str, ...],
    sample: int,
    reply_format: ReplyFormat = "free_text",
) -> str:
    """The hex digest naming one judgment: same judge, rubric version, question, answers, sample and reply
    format -> same reply."""
    identity = [
        endpoint.model,
        rubric.name,
        str(rubric.version),
        mode,
        question,
        list(answers),
        sample,
        endpoint.temperature,
        endpoint.reply_tokens(rubric),
    ]
    if endpoint.logprobs:  # a reply kept without its tokens cannot be weighted: ask again (older keys unchanged)
        identity.append(endpoint.logprobs)
    if reply_format == "structured":  # a free-text reply is not a constrained one: ask again (older keys unchanged)
        identity.append(reply_format)
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


class JudgeSession:
    """A judge endpoint with its cache; the first request that fails for good stops further requests."""

    def __init__(self, endpoint: JudgeEndpoint, cache_path: Path):
        self.endpoint = endpoint
        self.client = ChatClient(endpoint)
        self.cache = JudgmentCache(cache_path)
        self.context = self.client.context_length()  # None: the server does not say; requests go out uncapped
        self.failure: str | None = None
        self.requests_sent = 0
        self.reply_formats: dict[str, ReplyFormat] = {}  # by rubric name, once settled
        self._stop = threading.Event()
        self._count_lock = threading.Lock()

    def reply_format(self, rubric: Rubric) -> ReplyFormat | None:
        """How `rubric`'s judgments are asked for: the endpoint's choice, or under "auto" what the probe found
        (kept in the cache); None when the judge could not be asked (`failure` says why)."""
        if rubric.name not in self.reply_formats:
            choice = self.endpoint.reply_format
            found = choice if choice != "auto" else self._probe(response_format("grade", grading_schema(rubric)))
            if found is None:
                return None
            self.reply_formats[rubric.name] = found
        return self.reply_formats[rubric.name]

    def _probe(self, constraint: dict[str, Any]) -> ReplyFormat | None:
        """ "structured" if the judge takes `constraint`, "free_text" if it refuses it but answers without it."""
        key = hashlib.sha256(
            json.dumps(["reply format", self.endpoint.api_url, self.endpoint.model, constraint]).encode()
        ).hexdigest()
        known = self.cache.get(key)
        if known is not None:
            return "structured" if known.text == "structured" else "free_text"
        if self.failure:
            return None
        found: ReplyFormat
        try:
            try:
                self.client.complete(list(PROBE_MESSAGES), seed=0, max_tokens=1, constraint=constraint)
                found = "structured"
            except RequestRefused:
                self.client.complete(list(PROBE_MESSAGES), seed=0, max_tokens=1)  # refused as well: not a format
                found = "free_text"
        except JudgeUnavailable as error:  # a rejected key (ConfigError) is the caller's, as for any request
            self.failure = " ".join(str(error).split())
            self._stop.set()
            return None
        self.cache.put(key, self.endpoint.model, ChatReply(found))
        return found

    def check_fits(self, rubric: Rubric, pairwise: bool) -> None:
        """Refuse a rubric whose prompts, before any answer is put in, are already longer than the judge's context."""
        if self.context is None:
            return
        question = max(rubric.questions, key=lambda q: len(q.question) + len(q.reference or ""))
        prompts = {"grading": grading_messages(rubric, question, "")}
        if pairwise:
            prompts["pairwise"] = pairwise_messages(rubric, question, "", "")
        for mode, messages in prompts.items():
            length = self.client.prompt_tokens(messages)
            if length is not None and length >= self.context:
                raise ConfigError(
                    f"rubric {rubric.name}'s {mode} prompt takes {length} tokens before any answer, but judge "
                    f"{self.endpoint.model}'s context is {self.context} tokens",
                    hint="serve the judge with a longer context (vLLM --max-model-len) or shorten the rubric's "
                    "templates and system prompt",
                )

    def reply_budget(self, request: JudgeRequest) -> int:
        """The request's reply tokens, fewer where the judge's context leaves less room after its prompt."""
        if self.context is None:
            return request.max_tokens
        length = self.client.prompt_tokens(list(request.messages))
        if length is None:
            return min(request.max_tokens, self.context)
        if length >= self.context:
            raise PromptTooLong(
                f"a prompt of {length} tokens does not fit judge {self.endpoint.model}'s context "
                f"of {self.context} tokens",
                hint="serve the judge with a longer --max-model-len",
            )
        return min(request.max_tokens, self.context - length)

    def replies(self, requests: list[JudgeRequest]) -> dict[str, ChatReply]:
        """Replies by request key: cached ones for free, the others fetched concurrently while the judge works."""
        found = {r.key: reply for r in requests if (reply := self.cache.get(r.key)) is not None}
        todo = list({r.key: r for r in requests if r.key not in found}.values())
        if not todo or self.failure:
            return found
        with ThreadPoolExecutor(max_workers=self.endpoint.concurrency) as pool:
            futures = {pool.submit(self._fetch, request): request for request in todo}
            try:
                for future in as_completed(futures):
                    self._keep(futures[future], future, found)
            finally:
                for future in futures:
                    future.cancel()
        return found

    def _keep(self, request: JudgeRequest, future, found: dict[str, ChatReply]) -> None:
        try:
            reply = future.result()
        except JudgeUnavailable as error:
            self.failure = self.failure or " ".join(str(error).split())
            return
        if reply is None:
            return  # not sent because an earlier request failed
        self.cache.put(request.key, self.endpoint.model, reply)
        found[request.key] = reply

    def _fetch(self, request: JudgeRequest) -> ChatReply | None:
        if self._stop.is_set():
            return None
        max_tokens = self.reply_budget(request)  # PromptTooLong leaves this request unjudged, not the others
        with self._count_lock:
            self.requests_sent += 1
        try:
            return self.client.complete(
                list(request.messages), seed=request.sample, max_tokens=max_tokens, constraint=request.constraint
            )
        except MergescopeError:
            # Set here, in the worker, so that no queued request starts before the caller sees the failure;
            # a rejected key (ConfigError) fails every request alike and is re-raised by the caller.
            self._stop.set()
            raise

    def close(self) -> None:
        self.client.close()
        self.cache.close()


def grade(
    session: JudgeSession, rubric: Rubric, answers: list[Answer], samples: int, self_preference: bool = False
) -> list[Judgment]:
    """One Judgment per (answer, criterion, sample) the judge replied to; unreadable scores are None."""
    reply_format = session.reply_format(rubric)
    if reply_format is None:
        return []  # the judge could not be asked: judging stays incomplete
    constraint = response_format("grade", grading_schema(rubric)) if reply_format == "structured" else None
    requests = {}
    for answer in answers:
        question = rubric.question(answer.question_id)
        for sample in range(samples):
            key = cache_key(
                session.endpoint, rubric, "grade", question.question, (answer.answer,), sample, reply_format
            )
            messages = tuple(grading_messages(rubric, question, answer.answer))
            requests[(answer.question_id, sample)] = JudgeRequest(
                key, messages, sample, session.endpoint.reply_tokens(rubric), constraint
            )
    replies = session.replies(list(requests.values()))
    judgments = []
    for answer in answers:
        for sample in range(samples):
            reply = replies.get(requests[(answer.question_id, sample)].key)
            if reply is None:
                continue  # never sent or failed for good: judging stays incomplete, nothing is invented
            for criterion, parsed in parse_grades(reply.text, rubric.scales).items():
                weighted = expected_score(reply.text, parsed, reply.tokens, rubric.scales[criterion])
                judgments.append(
                    Judgment(
                        subject_id=answer.subject_id,
                        rubric=rubric.name,
                        question_id=answer.question_id,
                        criterion=criterion,
                        judge=session.endpoint.model,
                        sample=sample,
                        score=parsed.value,
                        parse_status=parsed.status,
                        raw_reply=reply.text,
                        self_preference=self_preference,
                        expected_score=weighted,
                    )
                )
    return judgments


def compare(
    session: JudgeSession,
    rubric: Rubric,
    answers: list[Answer],
    opponent: list[Answer],
    samples: int,
    self_preference: bool = False,
) -> list[Comparison]:
    """One Comparison per (question both answered, sample), each judged with the subject first and second."""
    theirs = {a.question_id: a for a in opponent}
    pairs = [(mine, theirs[mine.question_id]) for mine in answers if mine.question_id in theirs]
    reply_format = session.reply_format(rubric)
    if reply_format is None:
        return []
    constraint = response_format("verdict", PAIRWISE_SCHEMA) if reply_format == "structured" else None
    requests = {}
    for mine, other in pairs:
        question = rubric.question(mine.question_id)
        for sample in range(samples):
            for order, (first, second) in (("first", (mine, other)), ("swapped", (other, mine))):
                shown = (first.answer, second.answer)
                key = cache_key(session.endpoint, rubric, "pairwise", question.question, shown, sample, reply_format)
                messages = tuple(pairwise_messages(rubric, question, first.answer, second.answer))
                requests[(mine.question_id, sample, order)] = JudgeRequest(
                    key, messages, sample, session.endpoint.reply_tokens(rubric), constraint
                )
    replies = session.replies(list(requests.values()))
    comparisons = []
    for mine, other in pairs:
        for sample in range(samples):
            reply_first, reply_swapped = (
                replies.get(requests[(mine.question_id, sample, o)].key) for o in ("first", "swapped")
            )
            if reply_first is None or reply_swapped is None:
                continue
            comparisons.append(
                Comparison(
                    subject_id=mine.subject_id,
                    opponent_id=other.subject_id,
                    rubric=rubric.name,
                    question_id=mine.question_id,
                    judge=session.endpoint.model,
                    sample=sample,
                    verdict_first=parse_verdict(reply_first.text).verdict,
                    verdict_swapped=parse_verdict(reply_swapped.text).verdict,
                    raw_first=reply_first.text,
                    raw_swapped=reply_swapped.text,
                    self_preference=self_preference,
                )
            )
    return comparisons


def is_self_preference(judge_model: str, models: list[tuple[str, str | None]]) -> bool:
    """Whether the judge model's name or path names one of `models` ((name, path) pairs)."""
    judge = judge_model.rstrip("/")
    for name, path in models:
        names = {name, str(path).rstrip("/") if path else None, Path(path).name if path else None}
        if judge in names or Path(judge).name in names - {None}:
            return True
    return False
