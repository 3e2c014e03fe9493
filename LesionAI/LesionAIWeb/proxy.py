"""Forward a browser's requests and websocket to its session process, adding the worker key and nothing else.

Hop-by-hop headers, the browser's cookies and ``Authorization`` stay at the front: the session process
sees only the request, the key (:data:`~LesionAIWeb.worker.KEY_HEADER`) and, for its access log,
nothing it could use to reach another session.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from .worker import KEY_HEADER

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "cookie", "authorization", "content-length", "content-encoding",
}


def _forwarded_headers(headers, key: str) -> dict[str, str]:
    kept = {name: value for name, value in headers.items() if name.lower() not in HOP_BY_HOP}
    kept[KEY_HEADER] = key
    return kept


async def forward_http(request: web.Request, client: aiohttp.ClientSession, port: int, key: str, tail: str):
    """One HTTP request to ``http://127.0.0.1:<port>/<tail>`` and its answer back."""
    url = f"http://127.0.0.1:{port}/{tail}"
    body = await request.read() if request.can_read_body else None
    async with client.request(
        request.method, url, params=request.query, headers=_forwarded_headers(request.headers, key), data=body,
        allow_redirects=False,
    ) as answer:
        content = await answer.read()
        headers = {name: value for name, value in answer.headers.items() if name.lower() not in HOP_BY_HOP}
        return web.Response(status=answer.status, body=content, headers=headers)


async def _pump(source, target) -> None:
    """Copy messages from one websocket to the other until one side closes."""
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await target.send_bytes(message.data)
        else:
            break


async def forward_websocket(request: web.Request, client: aiohttp.ClientSession, port: int, key: str, tail: str):
    """Join the browser's websocket to the session process's (trame's state and image stream)."""
    browser = web.WebSocketResponse(max_msg_size=0, heartbeat=30.0)
    await browser.prepare(request)
    try:
        async with client.ws_connect(
            f"ws://127.0.0.1:{port}/{tail}", headers={KEY_HEADER: key}, max_msg_size=0
        ) as session:
            pumps = [asyncio.ensure_future(_pump(browser, session)), asyncio.ensure_future(_pump(session, browser))]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pending:
                pump.cancel()
    except aiohttp.ClientError:
        pass  # the session process ended: closing the browser's side tells the page
    await browser.close()
    return browser
