"""The read-only admin page (work in progress)."""

from aiohttp import web


def admin_app(main: web.Application) -> web.Application:
    """The admin page's application for `main`."""
    del main
    return web.Application()
