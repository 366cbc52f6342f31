"""Access log lines without query strings.

The one token a URL may carry is a session's watch-only view token (`?token=` on the OBS view link),
and a page opened from such a link sends its URL as the Referer of what it loads; other tokens sent in
a query are refused, but their requests are logged too. aiohttp's access log writes both (the
request line and the Referer), so every access log record loses its query strings here, whichever
way the server is run (`facecast serve`'s run_app, an AppRunner in tests), by a filter on aiohttp's
access logger.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "aiohttp.access"
_QUERY = re.compile(r"\?[^\s\"]*")


def strip_queries(text: str) -> str:
    """`text` with every `?query` cut off (up to the next space or double quote)."""
    return _QUERY.sub("", text)


class StripQueryFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = strip_queries(record.getMessage())
        record.args = ()
        # The same values as `extra` fields, for formatters that print them.
        line = getattr(record, "first_request_line", None)
        if isinstance(line, str):
            record.first_request_line = strip_queries(line)
        headers = getattr(record, "request_header", None)
        if isinstance(headers, dict):
            record.request_header = {
                k: strip_queries(v) if isinstance(v, str) else v for k, v in headers.items()
            }
        return True


def install_access_log_filter() -> None:
    """Strip query strings from aiohttp's access log (once per process)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, StripQueryFilter) for f in logger.filters):
        logger.addFilter(StripQueryFilter())
