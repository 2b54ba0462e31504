#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium and check what a reader would see.

Usage: ``python .ci/browser_check.py [BUILD_DIR] [--screenshots DIR]`` (defaults ``_build/html``
and ``_build/screenshots``), run by ``make browser-check``.

The book is served on 127.0.0.1 (a free port) and Debian's Chromium is driven through the Chrome
DevTools protocol (package ``websocket-client``). For the index and every chapter page it asserts:

- every ``<img>`` has loaded (``complete`` and ``naturalWidth > 0``);
- math is typeset: on a page with math, MathJax has produced ``mjx-container`` elements, every
  Sphinx math node holds one, no ``mjx-merror`` (a TeX error) is shown and no raw ``$$`` remains;
- the page logged no console error, threw no exception, and no request failed (the server
  answered 200 to every path, except a browser's automatic ``/favicon.ico``);
- nothing was requested from anywhere but the local server: the book needs no network;

and saves a full-page screenshot under the screenshots folder, one PNG per page.
Exit status: 0 all pages pass, 1 some page fails, 2 the check cannot run (no build, no Chromium).
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-port=0",
)
VIEWPORT = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
MAX_SCREENSHOT_HEIGHT = 12000  # px; longer pages are cut, the checks still cover the whole page
NOT_CHAPTERS = {"genindex.html", "search.html"}

# Runs in the page once it has loaded: waits for images, fonts and MathJax, then reports.
INSPECT_PAGE = """
(async () => {
  for (const img of document.images) { img.loading = "eager"; }
  await Promise.all(Array.from(document.images, (img) => img.complete ? null
    : new Promise((done) => {
      img.addEventListener("load", done);
      img.addEventListener("error", done);
    })));
  if (document.fonts) { await document.fonts.ready; }
  const mathNodes = Array.from(document.querySelectorAll("span.math, div.math"));
  let mathjax = "absent";
  if (window.MathJax) {
    const deadline = Date.now() + 30000;
    while (!(MathJax.startup && MathJax.startup.promise) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (MathJax.startup && MathJax.startup.promise) {
      await MathJax.startup.promise;
      mathjax = MathJax.version || "loaded";
    } else { mathjax = "did not start"; }
  }
  const article = document.querySelector("main") || document.body;
  return {
    title: document.title,
    images: Array.from(document.images, (img) => ({
      src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0 })),
    mathNodes: mathNodes.length,
    untypeset: mathNodes.filter((n) => !n.querySelector("mjx-container")).length,
    mjxContainers: document.querySelectorAll("mjx-container").length,
    mathErrors: Array.from(document.querySelectorAll("mjx-merror"),
      (e) => e.getAttribute("data-mjx-error") || e.textContent).slice(0, 5),
    rawDisplayMath: article.innerText.includes("$$"),
    mathjax: mathjax,
    height: Math.ceil(Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)),
  };
})()
"""


class CheckError(Exception):
    """The check cannot run at all (exit status 2)."""


def find_chromium(explicit: str | None) -> str:
    for candidate in (explicit,) if explicit else CHROMIUM_CANDIDATES:
        path = shutil.which(candidate) if candidate else None
        if path:
            return path
    raise CheckError(
        "Chromium not found: install it with `apt-get install chromium` "
        "(as root; `make test` does this), or pass --chromium PATH"
    )


def chapter_pages(build_dir: Path) -> list[str]:
    """``index.html`` first, then every other HTML page of the book (paths relative, '/')."""
    pages = []
    for path in sorted(build_dir.rglob("*.html")):
        rel = path.relative_to(build_dir).as_posix()
        if rel == "index.html" or rel in NOT_CHAPTERS or rel.split("/")[0].startswith("_"):
            continue
        pages.append(rel)
    return ["index.html", *pages]


# ------------------------------------------------------------------------------------ server
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    failed_paths: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        if code >= 400 and not self.path.split("?")[0].endswith("/favicon.ico"):
            self.failed_paths.append(f"{code} {self.path}")
        super().send_response(code, message)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Ignore a browser closing a connection early (it does for /favicon.ico)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(build_dir: Path) -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    failed_paths: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"failed_paths": failed_paths})
    server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(build_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, failed_paths


# ---------------------------------------------------------------------------------- browser
class Browser:
    """A headless Chromium with a fresh profile, reachable over the DevTools protocol."""

    def __init__(self, executable: str, timeout: float) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="browser-check-")
        self.log = open(Path(self.profile.name) / "chromium.log", "w+b")  # noqa: SIM115
        command = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}"]
        self.process = subprocess.Popen(
            [*command, "about:blank"], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.port = self._wait_for_port(timeout)

    def _wait_for_port(self, timeout: float) -> int:
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CheckError(
                    f"Chromium exited with status {self.process.returncode}:\n" + self.output_tail()
                )
            if port_file.is_file() and port_file.read_text().strip():
                return int(port_file.read_text().split()[0])
            time.sleep(0.05)
        raise CheckError(
            f"Chromium did not open its DevTools port in {timeout:.0f} s:\n" + self.output_tail()
        )

    def output_tail(self, limit: int = 2000) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-limit:]

    def new_page(self, timeout: float) -> Page:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT"
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            target = json.load(response)
        return Page(target["webSocketDebuggerUrl"], timeout)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        # Chromium's helper processes can outlive it by a moment and still write the profile.
        for _ in range(50):
            try:
                self.profile.cleanup()
                return
            except OSError:
                time.sleep(0.1)
        shutil.rmtree(self.profile.name, ignore_errors=True)


@dataclass
class PageEvents:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    loaded: bool = False


class Page:
    """One browser tab: send DevTools commands, collect the events that matter."""

    def __init__(self, websocket_url: str, timeout: float) -> None:
        import websocket  # websocket-client; imported here so --help works without it

        self.timeout = timeout
        self.ws = websocket.create_connection(
            websocket_url, timeout=timeout, suppress_origin=True, enable_multithread=False
        )
        self.ids = itertools.count(1)
        self.events = PageEvents()
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", **VIEWPORT)

    def send(self, method: str, **params: object) -> dict:
        message_id = next(self.ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            self._record(message)
        raise TimeoutError(f"{method}: no answer in {self.timeout:.0f} s")

    def _record(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Page.loadEventFired":
            self.events.loaded = True
        elif method == "Network.requestWillBeSent":
            self.events.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.events.errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.events.errors.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if not entry.get("url", "").split("?")[0].endswith("/favicon.ico"):
                self.events.errors.append(f"log: {entry['text']} {entry.get('url', '')}".strip())

    def open(self, url: str, settle: float = 0.5) -> None:
        """Navigate and wait for the load event, then for any redirect (index.html) to load."""
        self.events.loaded = False
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError(f"navigation failed: {result['errorText']}")
        deadline = time.monotonic() + self.timeout
        quiet_since = None
        while True:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{url} did not finish loading in {self.timeout:.0f} s")
            if self.events.loaded:
                quiet_since = quiet_since or now
                if now - quiet_since >= settle:
                    return
            else:
                quiet_since = None
            message = self._receive(wait=0.05)
            if message is not None:
                if message.get("method") == "Page.frameStartedLoading":
                    self.events.loaded = False
                self._record(message)

    def _receive(self, wait: float) -> dict | None:
        """The next event, or None if none arrives within ``wait`` seconds."""
        import websocket

        self.ws.settimeout(wait)
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None
        finally:
            self.ws.settimeout(self.timeout)

    def evaluate(self, expression: str) -> object:
        result = self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def drain(self, seconds: float) -> None:
        """Record the events that arrive during the next ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._receive(wait=0.05)
            if message is not None:
                self._record(message)

    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def screenshot(self, path: Path, height: int) -> None:
        height = max(VIEWPORT["height"], min(height, MAX_SCREENSHOT_HEIGHT))
        self.send("Emulation.setDeviceMetricsOverride", **{**VIEWPORT, "height": height})
        data = self.send("Page.captureScreenshot", format="png")["data"]
        self.send("Emulation.setDeviceMetricsOverride", **VIEWPORT)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self.ws.close()


# ----------------------------------------------------------------------------------- checks
def problems_on_page(report: dict, events: PageEvents, base_url: str) -> list[str]:
    problems = [f"image did not load: {img['src']}" for img in report["images"] if not img["ok"]]
    if report["mathNodes"]:
        if report["mathjax"] in ("absent", "did not start"):
            problems.append(
                f"page has {report['mathNodes']} math nodes but MathJax "
                f"{'is absent' if report['mathjax'] == 'absent' else 'did not start'}"
            )
        elif report["untypeset"] or not report["mjxContainers"]:
            problems.append(
                f"{report['untypeset']} of {report['mathNodes']} math nodes not typeset by MathJax"
            )
    problems += [f"MathJax error: {message}" for message in report["mathErrors"]]
    if report["rawDisplayMath"]:
        problems.append("raw '$$' in the page text: display math not converted")
    problems += events.errors
    local = (base_url, "data:", "blob:", "about:")
    problems += [
        f"request outside the book: {url}" for url in events.requests if not url.startswith(local)
    ]
    return problems


def screenshot_name(page: str) -> str:
    return page.removesuffix(".html").replace("/", "__") + ".png"


def check_book(build_dir: Path, screenshots: Path, chromium: str, timeout: float) -> int:
    pages = chapter_pages(build_dir)
    screenshots.mkdir(parents=True, exist_ok=True)
    server, failed_paths = serve(build_dir)
    base_url = f"http://127.0.0.1:{server.server_address[1]}/"
    browser = Browser(chromium, timeout)
    failures = 0
    try:
        for page_path in pages:
            tab = browser.new_page(timeout)
            try:
                failed_paths.clear()
                tab.open(base_url + page_path)
                report = tab.evaluate(INSPECT_PAGE)
                tab.drain(0.3)  # late console messages and failed requests
                shot = screenshots / screenshot_name(page_path)
                tab.screenshot(shot, report["height"])
                problems = problems_on_page(report, tab.events, base_url)
                problems += [f"server answered {entry}" for entry in failed_paths]
                landed = tab.url().removeprefix(base_url)
            except (RuntimeError, TimeoutError, OSError) as error:
                problems, report, landed, shot = [str(error)], None, page_path, None
            finally:
                tab.close()
            shown = f" -> {landed}" if landed != page_path else ""
            if report is not None:
                summary = (
                    f"{len(report['images'])} images, {report['mjxContainers']} formulas, "
                    f"screenshot {shot}"
                )
            else:
                summary = "no report"
            status = "FAIL" if problems else "ok  "
            print(f"{status} {page_path}{shown}: {summary}", flush=True)
            for problem in problems:
                print(f"       {problem}", flush=True)
            failures += bool(problems)
    finally:
        browser.close()
        server.shutdown()
    if failures:
        print(f"browser check: {failures} of {len(pages)} pages have problems")
        return 1
    print(f"browser check: all {len(pages)} pages load, with images and typeset math")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", nargs="?", default="_build/html", type=Path)
    parser.add_argument(
        "--screenshots",
        type=Path,
        default=None,
        help="folder for the PNGs (default: _build/screenshots beside BUILD_DIR)",
    )
    parser.add_argument("--chromium", default=None, help="Chromium executable")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per browser action")
    args = parser.parse_args(argv)
    screenshots = args.screenshots or args.build_dir.resolve().parent / "screenshots"
    try:
        if not (args.build_dir / "index.html").is_file():
            raise CheckError(f"no book in {args.build_dir}: build it first with `make book`")
        chromium = find_chromium(args.chromium)
        try:
            import websocket  # noqa: F401
        except ImportError as error:
            raise CheckError(
                "the Python package websocket-client is missing: run `make test` "
                "(or `.venv/bin/pip install websocket-client`)"
            ) from error
        return check_book(args.build_dir.resolve(), screenshots, chromium, args.timeout)
    except CheckError as error:
        print(f"browser check: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
