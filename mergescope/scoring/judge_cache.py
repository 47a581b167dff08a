"""The judge's raw replies (and their tokens, where asked for) by request key, in a SQLite file that outlives a run.

The key (judge.cache_key) names everything the reply depends on, so a rerun sends no request twice; the
reply-format probe's answer is kept here too, under a key of its own.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mergescope.scoring.judge_parse import ReplyToken


@dataclass(frozen=True)
class ChatReply:
    """A judge's reply text and, where they were asked for, its tokens with their top alternatives."""

    text: str
    tokens: tuple[ReplyToken, ...] = ()


class JudgmentCache:
    """Raw judge replies (and their tokens, where asked for) by request key, in a SQLite file that outlives the run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, judge TEXT NOT NULL,"
            " reply TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT (datetime('now')), tokens TEXT)"
        )
        if "tokens" not in {row[1] for row in self._db.execute("PRAGMA table_info(replies)")}:
            self._db.execute("ALTER TABLE replies ADD COLUMN tokens TEXT")  # a cache from before logprobs

    def get(self, key: str) -> ChatReply | None:
        row = self._db.execute("SELECT reply, tokens FROM replies WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        tokens = tuple(
            ReplyToken(text, tuple((alt, lp) for alt, lp in top), n) for text, n, top in json.loads(row[1] or "[]")
        )
        return ChatReply(row[0], tokens)

    def put(self, key: str, judge: str, reply: ChatReply) -> None:
        tokens = (
            json.dumps([[t.text, t.n_bytes, [list(alt) for alt in t.top]] for t in reply.tokens])
            if reply.tokens
            else None
        )
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO replies (key, judge, reply, tokens) VALUES (?, ?, ?, ?)",
                (key, judge, reply.text, tokens),
            )

    def close(self) -> None:
        self._db.close()
