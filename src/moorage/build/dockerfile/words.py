"""Shell-word lexing and variable expansion with BuildKit's semantics.

This module owns the small shell dialect that Dockerfile arguments are written in: quotes,
the escape character, ``$name`` and ``${name}`` with the modifiers ``:-`` ``-`` ``:+``
``+`` ``:?`` ``?`` (and BuildKit's ``#`` ``##`` ``%`` ``%%`` ``/`` ``//`` pattern forms).
It does not know which instruction expands what (see ``instructions.expand``).

- Single quotes keep everything literally; double quotes keep everything but ``$`` and
  the escape character, which there only escapes ``"``, ``$`` and itself.
- Outside quotes the escape character takes the next character literally; a lone escape
  at the end of the word is dropped.
- An unset variable expands to the empty string and its name is reported in
  :attr:`Expansion.undefined` (the ``UndefinedVar`` check uses it).
- ``$1``, ``$@``, ``$$`` and the other special parameters are never set.

Worked example::

    >>> lexer = ShellLexer()
    >>> lexer.expand("${HOME:-/root}/'$x'", {"HOME": "/home/me"}).value
    '/home/me/$x'
    >>> lexer.split('a "b c" $V', {"V": "d e"})
    ['a', 'b c', 'd', 'e']

``expand`` gives one word (what ENV, COPY and WORKDIR use); ``split`` also splits the
result into words after expansion, so an unquoted value with spaces becomes several words
(what EXPOSE uses). An :class:`Expander` binds a lexer to one environment and remembers
every name it looked up, for the executor and the linter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from moorage.errors import InvalidArgument

__all__ = ["Expander", "Expansion", "ExpansionError", "ShellLexer"]

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_HEREDOC_SPACE = (" ", "\t", "\r")


class ExpansionError(InvalidArgument):
    """A word that cannot be expanded: a bad substitution, an open quote, ``${v:?}``."""


@dataclass(frozen=True)
class Expansion:
    """The result of expanding one word."""

    value: str
    used: frozenset[str]  # names that were looked up and set
    undefined: frozenset[str]  # names that were looked up and not set


class ShellLexer:
    """Expands and splits words; one lexer may be shared, each call keeps its own state.

    ``escape`` is ``\\`` or the backtick chosen with ``# escape=```. The options mirror
    BuildKit's and are needed only by the parser: ``raw_quotes`` keeps quote characters
    in the output, ``raw_escapes`` keeps escape characters, ``skip_unset`` leaves
    references to unset variables as written, ``skip_quotes`` treats quotes as ordinary
    characters (heredoc bodies).
    """

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset: bool = False,
        skip_quotes: bool = False,
    ) -> None:
        if len(escape) != 1:
            raise InvalidArgument(f"escape must be one character: {escape!r}")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes

    def expand(self, word: str, env: Mapping[str, str]) -> Expansion:
        """``word`` with quotes removed and variables replaced, as one string."""
        scan = _Scan(self, word, env)
        value, _ = scan.process(word)
        return Expansion(value, frozenset(scan.used), frozenset(scan.undefined))

    def split(self, word: str, env: Mapping[str, str]) -> list[str]:
        """``word`` expanded, then split at unquoted whitespace (also inside values)."""
        _, words = _Scan(self, word, env).process(word)
        return words


class Expander:
    """Expands words against one environment and remembers the names it looked up.

    The executor makes one per instruction, from the stage's current variables (the
    base image's ENV, then the stage's ENV and ARG values in order)::

        ex = Expander({"APP": "/srv"})
        ex.word("$APP/bin")      # '/srv/bin'
        ex.undefined             # set(): every name was set
    """

    def __init__(self, env: Mapping[str, str], escape: str = "\\") -> None:
        self.env = env
        self.used: set[str] = set()
        self.undefined: set[str] = set()
        self._lexer = ShellLexer(escape)
        # Heredoc bodies keep their quotes and always use a backslash, as BuildKit does.
        self._raw = ShellLexer("\\", skip_quotes=True)

    def word(self, text: str) -> str:
        """One word: quotes removed, variables replaced."""
        return self._record(self._lexer.expand(text, self.env))

    def words(self, text: str) -> list[str]:
        """Words split after expansion (EXPOSE)."""
        self._record(self._lexer.expand(text, self.env))
        return self._lexer.split(text, self.env)

    def heredoc(self, text: str) -> str:
        """A heredoc body: variables replaced, quotes kept."""
        return self._record(self._raw.expand(text, self.env))

    def _record(self, expansion: Expansion) -> str:
        self.used |= expansion.used
        self.undefined |= expansion.undefined
        return expansion.value


class _Words:
    """Collects the words of a split; an empty quoted string makes no word."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.buf = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if not ch.isspace():
            self.add_raw(ch)
        elif self.in_word and self.buf:
            self.words.append(self.buf)
            self.buf = ""
            self.in_word = False

    def add_text(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw(self, text: str) -> None:
        self.buf += text
        self.in_word = True

    def done(self) -> list[str]:
        if self.buf:
            self.words.append(self.buf)
            self.buf = ""
        return self.words


class _Scan:
    """The state of one expansion: the text, the position, the names looked up."""

    def __init__(self, lexer: ShellLexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes
        self.used: set[str] = set()
        self.undefined: set[str] = set()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += len(ch)
        return ch

    def lookup(self, name: str) -> str | None:
        value = self.env.get(name)
        (self.undefined if value is None else self.used).add(name)
        return value

    def process(self, source: str) -> tuple[str, list[str]]:
        try:
            return self.until("", self.raw_escapes)
        except ExpansionError as exc:
            raise ExpansionError(f'failed to process "{source}": {exc}') from None

    def until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to ``stop`` (consumed) or to the end when ``stop`` is empty."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._until(stop)
        finally:
            self.raw_escapes = saved

    def _until(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        while ch := self.peek():
            if stop and ch == stop:
                self.next()
                return "".join(out), words.done()
            if ch == "$":
                text = self.dollar()
                out.append(text)
                words.add_text(text)  # an expanded value splits into words
            elif ch == "<":
                text = self.angle()
                out.append(text)
                words.add_raw(text)
            elif ch in "'\"" and not self.lx.skip_quotes:
                text = self.single_quoted() if ch == "'" else self.double_quoted()
                out.append(text)
                words.add_raw(text)
            elif not self._plain(out, words):
                break
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.done()

    def _plain(self, out: list[str], words: _Words) -> bool:
        """One ordinary character, or an escape and the character it escapes."""
        ch = self.next()
        if ch != self.lx.escape:
            words.add_char(ch)
            out.append(ch)
            return True
        if self.raw_escapes:
            words.add_raw(ch)
            out.append(ch)
        ch = self.next()
        if not ch:
            return False  # a lone escape at the end is dropped
        words.add_raw(ch)
        out.append(ch)
        return True

    def single_quoted(self) -> str:
        opening = self.next()
        out = [opening] if self.lx.raw_quotes else []
        while True:
            ch = self.next()
            if not ch:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quoted(self) -> str:
        opening = self.next()
        out = [opening] if self.lx.raw_quotes else []
        while True:
            ch = self.peek()
            if not ch:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.lx.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if not following:
                    continue  # the loop then reports the open quote
                if following in ('"', "$", self.lx.escape):
                    ch = self.next()
            out.append(ch)

    def angle(self) -> str:
        """``<`` or ``<<`` with the blanks after it, kept in one word (heredoc markers)."""
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        space = ""
        while self.peek() in _HEREDOC_SPACE and self.peek():
            space += self.next()
        return "<<" + space

    def name(self) -> str:
        ch = self.peek()
        if ch.isdecimal():
            digits = ""
            while self.peek().isdecimal() and self.peek():
                digits += self.next()
            return digits
        if ch and ch in _SPECIAL_PARAMS:
            return self.next()
        name = ""
        while (ch := self.peek()) and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            name += self.next()
        return name

    def dollar(self) -> str:
        self.next()  # "$"
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.lx.skip_unset else ""
            return value
        self.next()  # "{"
        first = self.peek()
        if not first:
            raise ExpansionError("syntax error: missing '}'")
        if first in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        return self.braced(self.name())

    def braced(self, name: str) -> str:
        ch = self.next()
        if ch == "}":
            value = self.lookup(name)
            if value is None:
                return "${" + name + "}" if self.lx.skip_unset else ""
            return value
        if ch == ":":
            op = self.next()
            return self.modifier(name, op, colon=True)
        if ch and ch in "+-?#%":
            return self.modifier(name, ch, colon=False)
        if ch == "/":
            return self.replace(name)
        if not ch:
            raise ExpansionError("syntax error: missing '}'")
        raise ExpansionError(f"unsupported modifier ({ch}) in substitution")

    def modifier(self, name: str, op: str, colon: bool) -> str:
        spelled = (":" if colon else "") + op
        pattern_op = op in ("#", "%")
        if colon and pattern_op:
            raise ExpansionError(f"unsupported modifier ({spelled}) in substitution")
        try:
            word, _ = self.until("}", pattern_op)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        value = self.lookup(name)
        if value is None and self.lx.skip_unset:
            return "${" + name + spelled + word + "}"
        empty = value is None or (colon and value == "")
        if op == "-":
            return word if empty else value or ""
        if op == "+":
            return "" if empty else word
        if op == "?":
            if value is None:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if empty:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if pattern_op:
            greedy = word.startswith(op)
            if greedy:
                word = word[1:]
            trim = _trim_suffix if op == "%" else _trim_prefix
            return trim(word, value or "", greedy)
        raise ExpansionError(f"unsupported modifier ({spelled}) in substitution")

    def replace(self, name: str) -> str:
        every = self.peek() == "/"
        if every:
            self.next()
        try:
            pattern, _ = self.until("/", True)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.until("}", True)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        value = self.lookup(name)
        if value is None and self.lx.skip_unset:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _shell_pattern(pattern, greedy=True, anchored=False)
        text = value or ""
        if every:
            return regex.sub(lambda _: replacement, text)
        found = regex.search(text)
        if found is None:
            return text
        return text[: found.start()] + replacement + text[found.end() :]


def _shell_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard (``*``, ``?``, ``\\`` escapes; no brackets) as a regular expression."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i : i + 1]
            if following in ("}", "/"):
                continue  # the escape only protected the ${...} syntax
            if following not in ("*", "?", "\\"):
                raise ExpansionError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'"
                )
            out.append(re.escape(following))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    found = _shell_pattern(pattern, greedy=greedy, anchored=True).match(value)
    return value[found.end() :] if found else value


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # The shortest match at the end is the shortest match at the start of the reversal.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern, keeping each escape in front of the character it escapes."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        step = 2 if pattern[i] == "\\" and i + 1 < len(pattern) else 1
        tokens.append(pattern[i : i + step])
        i += step
    return "".join(reversed(tokens))
