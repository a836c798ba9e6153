"""The admin page in a real browser: Playwright driving Debian's chromium.

Playwright's own browser download is not used: the test points it at the system chromium
(``apt-get install chromium``; scripts/test installs it). Without chromium the test skips
locally and fails under ``CI=true``. ``ADMIN_SCREENSHOT=docs/admin-page.png`` also saves the
overview's screenshot there (the picture in docs/observability.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from playwright.async_api import Page, ViewportSize, async_playwright, expect

from tests.admin_support import HOSTILE, TOKEN, admin_config, decide_some, start_admin
from tests.metrics_support import skip_or_fail

LAPTOP: ViewportSize = {"width": 1366, "height": 768}

# WCAG 2 contrast of every text element against the nearest opaque background behind it.
CONTRAST = """
() => {
  const rgb = s => s.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  let worst = 21, where = "";
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst) { worst = ratio; where = el.outerHTML.slice(0, 80); }
  }
  return [worst, where];
}
"""

UNLABELLED = """
() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
  .filter(e => e.labels.length === 0).map(e => e.outerHTML)
"""


def chromium() -> str:
    """Debian's chromium, which Playwright drives instead of a browser of its own."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        skip_or_fail("chromium is not installed (apt-get install chromium)")
    return found


async def check_accessible(page: Page) -> None:
    """Landmarks, labelled fields, AA contrast, and no page-wide horizontal scrolling."""
    assert await page.evaluate("document.documentElement.lang") == "en"
    await expect(page.get_by_role("main")).to_have_count(1)
    assert await page.evaluate(UNLABELLED) == []
    worst, where = await page.evaluate(CONTRAST)
    assert worst >= 4.5, f"contrast {worst:.2f} at {where}"
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= LAPTOP["width"]


async def test_an_operator_signs_in_reads_the_overview_and_tries_a_device(
    aiohttp_client: Any, inventory: Path, tmp_path: Path
) -> None:
    """In chromium: the token gate, the overview's answers, escaping, the try form, sign-out."""
    executable = chromium()
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    await decide_some(admin)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable)
        context = await browser.new_context(viewport=LAPTOP)
        page = await context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        try:
            await page.goto(f"{admin.url}/")
            assert page.url == f"{admin.url}/login"
            await check_accessible(page)

            await page.get_by_label("Admin token").fill("not-the-token-not-the-token")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("alert")).to_have_text("That token is not right.")
            assert await context.cookies() == []

            await page.get_by_label("Admin token").fill(TOKEN)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
            (cookie,) = await context.cookies()
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"
            assert TOKEN not in cookie["value"]

            await expect(page.get_by_role("banner")).to_be_visible()
            await expect(page.get_by_role("navigation", name="Admin pages")).to_be_visible()
            providers = page.get_by_role("table", name="Providers, in configured order")
            await expect(providers.get_by_role("row", name="inventory")).to_contain_text("ready")
            refused = page.get_by_role("table", name="Denials (shadow would-denials included)")
            for code in ("device-unmanaged", "device-not-found", "identifier-invalid"):
                await expect(
                    refused.get_by_role("cell", name=code, exact=True).first
                ).to_be_visible()
            await expect(page.get_by_text(HOSTILE).first).to_be_visible()  # shown as text
            await check_accessible(page)
            await page.screenshot(path=tmp_path / "admin.png", full_page=True)
            assert (tmp_path / "admin.png").stat().st_size > 20_000
            if target := os.environ.get("ADMIN_SCREENSHOT"):
                shutil.copyfile(tmp_path / "admin.png", target)

            await page.get_by_label("Denials only").check()
            await page.get_by_role("button", name="Filter").click()
            assert "denied=1" in page.url
            decisions = page.get_by_role("region", name="Newest first, from the audit log")
            await expect(decisions.get_by_text("allowed", exact=True)).to_have_count(0)

            await page.get_by_role("link", name="Try a device").click()
            await page.get_by_label("Webhook").select_option("people")
            await page.get_by_label("Serial number or UDID").fill("C02TEST00002")
            await page.get_by_role("button", name="Decide").click()
            assert page.url.endswith("/try?webhook=people&identifier=C02TEST00002")
            rules = page.get_by_role("table", name="Every policy rule, in evaluation order")
            await expect(rules.get_by_role("row", name="managed")).to_contain_text("fail")
            await check_accessible(page)

            await page.get_by_role("button", name="Sign out").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
            await page.goto(f"{admin.url}/")
            assert page.url == f"{admin.url}/login"
            assert dialogs == []
        finally:
            await browser.close()
