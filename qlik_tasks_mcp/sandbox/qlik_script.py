"""A small reader of Qlik load scripts for the sandbox: tabs, statements and a syntax check.

It finds what a person breaks most often, and nothing it is not sure of: an unterminated string or bracket, a
parenthesis that does not match, an unknown statement keyword, and a statement that starts on a new line while the
one before it still lacks its `;`. Control statements (IF, FOR, SUB, ...) end at the end of their line, as in Qlik.
SQL statements are passed to the driver by Qlik, so only their quoting is checked.

Tabs: a line starting with `///$tab` begins a tab; a tab's line 1 is the line after its marker. Issues carry the
tab index (from 0), the line in the tab and the column (1-based, in UTF-8 bytes), as validatescript answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TAB_MARK = "///$tab"
CLOSERS = {"'": "'", '"': '"', "[": "]", "`": "`"}
CONTROL = {
    "IF",
    "ELSEIF",
    "ELSE",
    "END",
    "FOR",
    "NEXT",
    "DO",
    "LOOP",
    "EXIT",
    "SUB",
    "SWITCH",
    "CASE",
    "DEFAULT",
    "CALL",
}
PREFIXES = {
    "ADD", "BUFFER", "BUNDLE", "CONCATENATE", "CROSSTABLE", "FIRST", "GENERIC", "HIERARCHY", "HIERARCHYBELONGSTO",
    "IMAGE_SIZE", "INFO", "INNER", "INTERVALMATCH", "JOIN", "KEEP", "LEFT", "MAPPING", "MERGE", "NOCONCATENATE",
    "ONLY", "OUTER", "REPLACE", "RIGHT", "SAMPLE", "SEMANTIC", "UNLESS", "WHEN", "DIRECT", "QUERY",
}  # fmt: skip
STATEMENTS = {
    "ALIAS", "BINARY", "COMMENT", "CONNECT", "DECLARE", "DERIVE", "DIRECTORY", "DISCONNECT", "DROP", "EXECUTE",
    "FLUSHLOG", "FORCE", "LET", "LIB", "LOAD", "LOOSEN", "MAP", "NULLASNULL", "NULLASVALUE", "QUALIFY", "REM",
    "RENAME", "SEARCH", "SECTION", "SELECT", "SET", "SLEEP", "SQL", "SQLCOLUMNS", "SQLTABLES", "SQLTYPES", "STAR",
    "STORE", "TAG", "TRACE", "UNMAP", "UNQUALIFY", "UNTAG", "ODBC", "OLEDB", "CUSTOM",
}  # fmt: skip
KNOWN = CONTROL | PREFIXES | STATEMENTS
# A line that starts one of these statements inside another statement means the one before lacks its `;`. Each
# shape is strict enough that a field named like a keyword (`Store,`, `Set as Kit`) never matches.
NEW_STATEMENT = re.compile(
    r"^\s*(?:LOAD\s+(?!AS\b)[^\s,)]|(?:SET|LET)\s+[\w.$\[\]]+\s*=|STORE\s+\S.*\bINTO\b|"
    r"DROP\s+(?:TABLES?|FIELDS?)\b|SQL\s+\w|TRACE\s|LIB\s+CONNECT\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Token:
    text: str
    kind: str  # word, string, punct, newline
    line: int
    col: int


@dataclass(frozen=True)
class Issue:
    tab: int
    line: int
    col: int
    msg: str
    info: str = ""

    def wire(self) -> dict[str, object]:
        return {"Tab": self.tab, "Line": self.line, "Column": self.col, "Msg": self.msg, "Info": self.info}


@dataclass
class Statement:
    tab: int
    tokens: list[Token] = field(default_factory=list[Token])

    @property
    def first_line(self) -> int:
        return self.tokens[0].line

    @property
    def last_line(self) -> int:
        return self.tokens[-1].line

    def words(self) -> list[str]:
        return [t.text.upper() for t in self.tokens if t.kind == "word"]


@dataclass
class Tab:
    index: int
    name: str
    offset: int  # lines of the whole script before this tab's line 1
    lines: list[str]


def tabs(script: str) -> list[Tab]:
    out: list[Tab] = []
    current = Tab(0, "Main", 0, [])
    for number, line in enumerate(script.splitlines(), start=1):
        if line.startswith(TAB_MARK):
            if current.lines or out:
                out.append(current)
            current = Tab(len(out), line[len(TAB_MARK) :].strip() or "Tab", number, [])
        else:
            current.lines.append(line)
    out.append(current)
    return out


def absolute_line(script_tabs: list[Tab], tab: int, line: int) -> int:
    return script_tabs[tab].offset + line


def _byte_col(text: str, index: int) -> int:
    return len(text[:index].encode()) + 1


class _Lexer:
    """Tokens of one tab; an unterminated string, bracket or comment is an Issue."""

    def __init__(self, tab: Tab) -> None:
        self.tab = tab
        self.tokens: list[Token] = []
        self.issue: Issue | None = None

    def run(self) -> list[Token]:
        lines = self.tab.lines
        row, col = 0, 0
        while row < len(lines) and self.issue is None:
            row, col = self._step(lines, row, col)
        return self.tokens

    def _add(self, text: str, kind: str, row: int, col: int) -> None:
        self.tokens.append(Token(text, kind, row + 1, _byte_col(self.tab.lines[row], col)))

    def _step(self, lines: list[str], row: int, col: int) -> tuple[int, int]:
        text = lines[row]
        if col >= len(text):
            self._add("\n", "newline", row, col)
            return row + 1, 0
        char = text[col]
        if char.isspace():
            return row, col + 1
        if text.startswith("//", col):
            return row, len(text)
        if text.startswith("/*", col):
            return self._skip_to(lines, row, col, "*/", "Unterminated comment: missing */")
        if char in CLOSERS:
            return self._quoted(lines, row, col)
        if char.isalnum() or char in "_.#@":
            end = col
            while end < len(text) and (text[end].isalnum() or text[end] in "_.#@"):
                end += 1
            if text[col:end].upper() == "REM" and self._starts_statement():
                return self._skip_to(lines, row, end, ";", "REM statement without its closing ;")
            self._add(text[col:end], "word", row, col)
            return row, end
        self._add(char, "punct", row, col)
        return row, col + 1

    def _starts_statement(self) -> bool:
        previous = next((t for t in reversed(self.tokens) if t.kind != "newline"), None)
        return previous is None or previous.text == ";"

    def _skip_to(self, lines: list[str], row: int, col: int, end: str, message: str) -> tuple[int, int]:
        start = (row, col)
        while row < len(lines):
            found = lines[row].find(end, col)
            if found >= 0:
                return row, found + len(end)
            row, col = row + 1, 0
        self._fail(start, message)
        return len(lines), 0

    def _quoted(self, lines: list[str], row: int, col: int) -> tuple[int, int]:
        opener = lines[row][col]
        closer = CLOSERS[opener]
        start, pieces = (row, col), []
        col += 1
        while row < len(lines):
            text = lines[row]
            found = text.find(closer, col)
            if found < 0:
                pieces.append(text[col:])
                row, col = row + 1, 0
                continue
            if closer == "'" and text.startswith("''", found):  # '' is a quote inside a string
                pieces.append(text[col : found + 1])
                col = found + 2
                continue
            pieces.append(text[col:found])
            self._add(opener + "\n".join(pieces) + closer, "string", *start)
            return row, found + 1
        what = "string" if opener in "'\"`" else "bracket"
        self._fail(start, f"Unterminated {what}: missing closing {closer}")
        return len(lines), 0

    def _fail(self, at: tuple[int, int], message: str) -> None:
        row, col = at
        self.issue = Issue(self.tab.index, row + 1, _byte_col(self.tab.lines[row], col), message)


@dataclass
class _Splitter:
    """Statements of one tab from its tokens, and the issues found while splitting them."""

    tab: Tab
    statements: list[Statement] = field(default_factory=list[Statement])
    issues: list[Issue] = field(default_factory=list[Issue])
    current: list[Token] = field(default_factory=list[Token])
    open_parens: list[Token] = field(default_factory=list[Token])

    def feed(self, token: Token, line_start: bool) -> None:
        if token.kind == "newline":
            if self.current and self._kind() == "control":
                self.end()
            return
        if line_start and self.current and not self.open_parens and self._kind() == "plain":
            self._check_new_statement(token)
        self.current.append(token)
        if token.text == "(" and token.kind == "punct":
            self.open_parens.append(token)
        elif token.text == ")" and token.kind == "punct":
            if self.open_parens:
                self.open_parens.pop()
            else:
                self._issue(token, "Unexpected token: ')'", "No '(' is open here.")
        elif token.text == ";" and token.kind == "punct":
            self.end()

    def _check_new_statement(self, token: Token) -> None:
        text = self.tab.lines[token.line - 1]
        if token.kind == "word" and NEW_STATEMENT.match(text) and not self._only_prefixes():
            start = self.current[0].line + self.tab.offset
            self._issue(
                token,
                f"Unexpected token: '{token.text}'",
                f"The statement that starts on line {start} has no ';' before this one.",
            )
            self.end()

    def _kind(self) -> str:
        head = self._head()
        if head in CONTROL:
            return "control"
        return "sql" if head in ("SQL", "SELECT") else "plain"

    def _head(self) -> str:
        """The statement's keyword: its first word after any labels."""
        tokens = self.current
        index = 0
        while index + 1 < len(tokens) and tokens[index].kind in ("word", "string") and tokens[index + 1].text == ":":
            index += 2
        first = tokens[index] if index < len(tokens) else None
        return first.text.upper() if first is not None and first.kind == "word" else ""

    def _only_prefixes(self) -> bool:
        depth, words = 0, []
        for index, token in enumerate(self.current):
            following = self.current[index + 1] if index + 1 < len(self.current) else None
            if token.text == "(":
                depth += 1
            elif token.text == ")":
                depth -= 1
            elif depth == 0 and token.kind == "word" and not (following is not None and following.text == ":"):
                words.append(token.text.upper())
        return all(w in PREFIXES for w in words)

    def end(self) -> None:
        if not self.current:
            return
        for opener in self.open_parens[:1]:
            self._issue(opener, "Missing ')'", "This '(' is not closed before the statement ends.")
        head = self._head()
        if head and head not in KNOWN:
            word = next(t for t in self.current if t.text.upper() == head)
            self._issue(word, f"Unknown statement: {word.text}", "A statement starts with a script keyword.")
        self.statements.append(Statement(self.tab.index, self.current))
        self.current, self.open_parens = [], []

    def _issue(self, token: Token, msg: str, info: str) -> None:
        self.issues.append(Issue(self.tab.index, token.line, token.col, msg, info))


def read_tab(tab: Tab) -> tuple[list[Statement], list[Issue]]:
    lexer = _Lexer(tab)
    tokens = lexer.run()
    splitter = _Splitter(tab)
    line_start = True
    for token in tokens:
        splitter.feed(token, line_start)
        line_start = token.kind == "newline"
    splitter.end()
    if lexer.issue is not None:
        splitter.issues.append(lexer.issue)
    return splitter.statements, splitter.issues


def read_script(script: str) -> tuple[list[Tab], list[Statement], list[Issue]]:
    script_tabs = tabs(script)
    statements: list[Statement] = []
    issues: list[Issue] = []
    for tab in script_tabs:
        found, problems = read_tab(tab)
        statements.extend(found)
        issues.extend(problems)
    return script_tabs, statements, issues


def check(script: str) -> dict[str, list[dict[str, object]]]:
    """validatescript's answer: {"Errors": [...], "Warnings": [...]}."""
    _, _, issues = read_script(script)
    return {"Errors": [i.wire() for i in issues], "Warnings": []}
