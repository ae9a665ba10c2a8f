"""The web interface in a real headless Chromium (Debian's ``chromium``, driven by Playwright;
no browser is downloaded): log in, upload, see, download byte-identical, restore an older
version, share with another user who then sees it, and open a link in a fresh context without
logging in. Screenshots of the main pages go to docs/screenshots/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

from tests.web.conftest import docs_dir, user_with_password

pytestmark = pytest.mark.cluster

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def _login(browser: Browser, base: str, name: str, password: str) -> Page:
    context = await browser.new_context(
        accept_downloads=True, viewport={"width": 1100, "height": 760}
    )
    page = await context.new_page()
    await page.goto(f"{base}/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("button:text-is('Log in')")
    await page.wait_for_url(f"{base}/files/")
    return page


async def _download(page: Page, selector: str, into: Path) -> bytes:
    async with page.expect_download() as info:
        await page.click(selector)
    download = await info.value
    await download.save_as(into)
    return into.read_bytes()


async def _shot(page: Page, name: str) -> None:
    out = docs_dir()
    out.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(out / f"{name}.png"), full_page=True)


async def test_web_interface_in_a_real_browser(cluster, web_url: str, tmp_path: Path) -> None:
    alice, alice_pw, _ = await user_with_password(cluster, "alice")
    bob, bob_pw, _ = await user_with_password(cluster, "bob")
    v1, v2 = os.urandom(300_000), os.urandom(200_000)
    src = tmp_path / "report.bin"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            anon = await (await browser.new_context()).new_page()
            await anon.goto(f"{web_url}/login")
            await _shot(anon, "login")

            page = await _login(browser, web_url, alice, alice_pw)
            await page.fill("input[name=name]", "team")
            await page.click("button:text-is('Create')")
            await page.click("a:text-is('team/')")
            await page.wait_for_url(f"{web_url}/files/team")
            # Upload (the page's script sends it in chunks), then a second version. The first
            # chunk of the first upload is cut off on the way: the script resumes it.
            cut: list[str] = []

            async def flaky(route: Route) -> None:
                if route.request.method == "PUT" and not cut:
                    cut.append(route.request.url)
                    await route.abort()
                else:
                    await route.continue_()

            await page.route("**/api/uploads/**", flaky)
            for data in (v1, v2):
                src.write_bytes(data)
                await page.set_input_files("input[type=file]", str(src))
                async with page.expect_navigation():
                    await page.click("button:text-is('Upload')")
            await page.unroute("**/api/uploads/**")
            assert len(cut) == 1
            await page.wait_for_selector("a:text-is('report.bin')")
            await _shot(page, "folder")

            await page.click("a:text-is('report.bin')")
            await page.wait_for_url(f"{web_url}/files/team/report.bin")
            assert await _download(page, "#download", tmp_path / "got-v2") == v2
            await _shot(page, "file-history")
            # Restore the older version (the second row of the history), download it again.
            await page.locator("button:text-is('Restore this')").nth(1).click()
            await page.wait_for_selector("#flash")
            assert await _download(page, "#download", tmp_path / "got-v1") == v1

            # Share the folder with bob, who then sees it in his tree.
            await page.goto(f"{web_url}/files/team")
            await page.fill("input[name=user]", bob)
            await page.select_option("select[name=role]", "viewer")
            await page.click("button:text-is('Share')")
            await page.wait_for_selector("#flash")
            bob_page = await _login(browser, web_url, bob, bob_pw)
            await bob_page.goto(f"{web_url}/shared")
            await bob_page.wait_for_selector("a:text-is('team')")
            await _shot(bob_page, "shared")
            await bob_page.click("a:text-is('team')")
            await bob_page.wait_for_selector("a:text-is('report.bin')")

            # A link, opened in a fresh context with no session.
            await page.goto(f"{web_url}/files/team/report.bin")
            await page.click("button:text-is('Create link')")
            await page.wait_for_selector("#new-link")
            link = (await page.text_content("#new-link")) or ""
            assert "/s/" in link
            await _shot(page, "links")
            await page.goto(f"{web_url}/trash/")
            await _shot(page, "trash")

            stranger = await (await browser.new_context(accept_downloads=True)).new_page()
            await stranger.goto(link)
            await stranger.wait_for_selector("#download")
            await _shot(stranger, "public-link")
            assert await _download(stranger, "#download", tmp_path / "via-link") == v1
            missing = await stranger.goto(f"{web_url}/s/not-a-token")
            assert missing is not None and missing.status == 404
        finally:
            await browser.close()
