"""The console in a real browser: headless Chromium (Debian's) driven by Playwright, against the real
ingress app served by uvicorn on a free loopback port, on real Redis.

Skipped with the reason when Chromium or Playwright is missing, unless INTAKE_REQUIRE_BROWSER=1 (CI).
Install: ``apt-get install -y chromium`` and ``pip install playwright`` (never ``playwright install``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import make_settings
from tests.e2e.seed import PASSWORD, TENANT_A, TENANT_B, Seeded, seed_all, seed_history

CHROMIUM = os.environ.get("INTAKE_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _need_browser() -> None:
    reason = ""
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "Playwright is not installed (pip install playwright)"
    if reason:
        if os.environ.get("INTAKE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The real ingress app (console mounted) under uvicorn, in a thread with its own event loop."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self.error = exc

    async def _serve(self) -> None:
        import uvicorn

        from ghl_intake.embedded import build_app, make_pool

        pool = make_pool(self.settings)
        app = build_app(self.settings, pool)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                lifespan="off")
        self.server = uvicorn.Server(config)
        try:
            await self.server.serve()
        finally:
            await pool.aclose()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.error:
                raise self.error
            if self.server is not None and self.server.started:
                return
            time.sleep(0.05)
        raise TimeoutError("uvicorn did not start")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live(real_redis_url: str) -> Iterator[tuple[Server, Seeded]]:
    _need_browser()
    settings = make_settings(real_redis_url)

    async def seed() -> Seeded:
        r = Redis.from_url(real_redis_url)
        try:
            await seed_history(r, settings, TENANT_A)
            await seed_history(r, settings, TENANT_B, seed=11)
            return await seed_all(r, settings)
        finally:
            await r.aclose()

    seeded = asyncio.run(seed())
    server = Server(settings)
    server.start()
    yield server, seeded
    server.stop()


def test_console_in_chromium(live: tuple[Server, Seeded]) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, seeded = live
    base = server.url + "/console"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.set_default_timeout(30_000)  # a loaded machine: first Chromium load, password hashing

            # login: an unauthenticated visit lands on the form, then back where it wanted to go
            page.goto(base + "/dead-letters")
            expect(page).to_have_url(f"{base}/login?next=%2Fconsole%2Fdead-letters")
            page.fill("#username", "opa")
            page.fill("#password", "wrong password!")
            page.click("#signin")
            expect(page.locator(".error")).to_contain_text("Wrong user name or password")
            page.fill("#username", "opa")
            page.fill("#password", PASSWORD)
            page.click("#signin")
            expect(page).to_have_url(base + "/dead-letters")
            cookie = next(c for c in ctx.cookies() if c["name"] == "gi_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            expect(page.locator("#dlq-table")).to_contain_text(seeded.dlq_a)
            expect(page.locator("#dlq-table")).not_to_contain_text(seeded.dlq_b)

            # a denied tenant, and another tenant's dead letter typed into the URL
            resp = page.goto(f"{base}/?tenant={TENANT_B}")
            assert resp is not None and resp.status == 403
            expect(page.locator("h1")).to_have_text("Not allowed")
            resp = page.goto(f"{base}/dead-letters/{seeded.dlq_b}")
            assert resp is not None and resp.status == 404

            # a replay, with the button in the list
            page.goto(base + "/dead-letters")
            page.locator(f'tr[data-id="{seeded.dlq_a}"] button.replay').click()
            expect(page.locator(".flash")).to_contain_text("replay #1 enqueued")
            expect(page.locator("#dlq-state")).to_have_text("replayed")
            page.goto(base + "/")
            expect(page.locator("#tenant-table")).to_contain_text(TENANT_A)
            expect(page.locator("#tenant-table")).not_to_contain_text(TENANT_B)

            # logout: the session is gone server-side too
            page.click("#logout")
            expect(page).to_have_url(base + "/login")
            page.goto(base + "/")
            expect(page).to_have_url(f"{base}/login?next=%2Fconsole%2F")
            ctx.close()

            # the dashboard as an admin sees it, for the README; then on a phone-sized screen
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.goto(base + "/login")
            page.fill("#username", "root")
            page.fill("#password", PASSWORD)
            page.click("#signin")
            expect(page.locator("#selected-tenant")).to_have_text(TENANT_A)
            expect(page.locator("#tenant-table")).to_contain_text(TENANT_B)
            expect(page.locator("svg.chart rect").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "console-dashboard.png"), full_page=True)
            page.goto(base + "/dead-letters?state=")
            expect(page.locator("#dlq-table")).to_contain_text(seeded.dlq_b)
            page.screenshot(path=str(ARTIFACTS / "console-dead-letters.png"), full_page=True)
            page.goto(base + "/")
            page.set_viewport_size({"width": 390, "height": 844})
            page.reload()
            expect(page.locator("svg.chart rect").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "console-dashboard-mobile.png"), full_page=True)
            ctx.close()
        finally:
            browser.close()
    shot = ARTIFACTS / "console-dashboard.png"
    assert shot.stat().st_size > 10_000
    if os.environ.get("INTAKE_UPDATE_DOC_SCREENSHOTS") == "1":  # refresh the README's pictures on request
        for name in ("console-dashboard.png", "console-dead-letters.png"):
            shutil.copyfile(ARTIFACTS / name, ROOT / "docs" / name)
