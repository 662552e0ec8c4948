"""JSON only, and never a 500 (or a Python hint) for hostile JSON."""

from __future__ import annotations

import codecs
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding

from jobs import payload


class StrictJSONParser(JSONParser):
    """JSON read by ``jobs.payload.loads``: NaN/Infinity refused, a 400 for nesting deep enough to blow
    Python's recursion limit (``[[[[…`` fits easily in the size limit), and integers too long for
    Python to parse read as out-of-range ones, so the field they are in reports them in its own
    words instead of Python's ``sys.set_int_max_str_digits`` hint."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        encoding = get_encoding(parser_context or {})  # text codecs only (no bz2_codec bombs)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except UnicodeDecodeError:
            raise ParseError(f"JSON parse error - the body is not valid {encoding} text.") from None
        try:
            return payload.loads(text)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}.") from None
