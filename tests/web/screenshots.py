"""Screenshots of the workbench's main screens, taken by the browser harness the tests use.

Run by ``bash scripts/screenshots [DIR]`` (default ``docs/screenshots``):
a real ``motia-state dev`` over a file store seeded here, driven in
headless Chromium, one PNG per screen.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import motia_state as ms

from .browser import start_browser, wait_for
from .steps import write_app

SHOTS = ("list", "entry-history", "conflict", "transaction", "steps-triggers")


def _seed(store: Path) -> None:
    async def go() -> None:
        async with ms.FileStateAdapter(str(store)) as a:
            await a.set("user-42", "user.profile", {"name": "Ada Lovelace", "email": "ada@example.com", "plan": "pro"})
            await a.set("user-42", "user.score", 80)
            await a.set("user-42", "user.status", "active")
            await a.set("user-42", "user.badges", ["early-adopter"])
            await a.set(
                "user-7", "user.profile", {"name": "Grace Hopper", "email": "grace@example.com", "plan": "free"}
            )
            await a.set("user-7", "user.score", 130)
            await a.set("user-7", "user.status", "pending")
            await a.set("orders", "next-id", 1003)
            await a.set("orders", "open", [{"id": 1001, "pet": "Rex", "qty": 2}, {"id": 1002, "pet": "Tom", "qty": 1}])
            await a.set("inventory", "kibble", {"stock": 12, "reorderAt": 5})
            await a.increment("user-42", "user.score", 15)
            await a.set_field("user-42", "user.profile", "plan", "team")
            await a.increment("user-42", "user.score", 10)

    asyncio.run(go())


def _fit(driver: Any) -> None:
    # The whole page in one image: a headless window cannot grow past its screen.
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, 900)")
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1440, "height": min(int(height), 2000), "deviceScaleFactor": 1, "mobile": False},
    )
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)


def take(out: Path) -> list[Path]:
    """Take every screenshot into ``out``; returns the files."""
    from selenium.webdriver.common.by import By

    from ..app.devserver import DevServer

    css = By.CSS_SELECTOR
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = tmp / "store"
        _seed(store)
        root = write_app(tmp / "app")
        driver = start_browser(1440, 900)
        try:
            with DevServer(root, "--state", f"file:{store}") as server:
                server.start(tmp)

                def shot(name: str) -> None:
                    time.sleep(0.4)  # let highlights settle
                    path = out / f"{name}.png"
                    driver.save_screenshot(str(path))
                    made.append(path)
                    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

                driver.get(server.url + "/__motia")
                wait_for(driver, lambda d: d.find_elements(css, "tr.entry"))
                driver.find_element(css, "tr.entry[data-group='user-42'][data-key='user.profile']").click()
                wait_for(driver, lambda d: d.find_element(css, "#d-version").text)
                shot("list")

                driver.find_element(css, "tr.entry[data-group='user-42'][data-key='user.score']").click()
                wait_for(driver, lambda d: len(d.find_elements(css, "#timeline li")) >= 2)
                driver.find_elements(css, "#timeline li")[-1].click()
                _fit(driver)
                shot("entry-history")

                driver.find_element(css, "tr.entry[data-group='inventory']").click()
                wait_for(driver, lambda d: d.find_element(css, "#d-key").text == "kibble")
                editor = driver.find_element(css, "#d-editor")
                editor.clear()
                editor.send_keys('{"stock": 20, "reorderAt": 5}')
                # Someone else changes it meanwhile (through the same API).
                server.client.post(
                    "/__motia/state",
                    json={
                        "groupId": "inventory",
                        "key": "kibble",
                        "operation": "setField",
                        "value": {"field": "stock", "fieldValue": 9},
                    },
                )
                driver.find_element(css, "#d-save").click()
                wait_for(driver, lambda d: d.find_element(css, "#conflict").is_displayed())
                _fit(driver)
                shot("conflict")

                driver.find_element(css, "#tab-tx").click()
                driver.find_element(css, "#tx-group").send_keys("inventory")
                from selenium.webdriver.support.ui import Select

                for type_, key, fields in (
                    ("check", "kibble", {"op": "gte", "value": "3", "path": "/stock"}),
                    ("setField", "kibble", {"field": "reserved", "value": "3"}),
                    ("check", "kibble", {"op": "eq", "value": '"open"', "path": "/status"}),
                    ("push", "log", {"items": '[{"reserved": 3}]'}),
                ):
                    driver.find_element(css, "#tx-add").click()
                    row = driver.find_elements(css, "#tx-rows li")[-1]
                    Select(row.find_element(css, "[data-field=type]")).select_by_value(type_)
                    row.find_element(css, "[data-field=key]").send_keys(key)
                    for name, value in fields.items():
                        field = row.find_element(css, f"[data-field={name}]")
                        if field.tag_name == "select":
                            Select(field).select_by_value(value)
                        else:
                            field.send_keys(value)
                driver.find_element(css, "#tx-run").click()
                wait_for(driver, lambda d: "failed at record" in d.find_element(css, "#tx-summary").text)
                shot("transaction")

                server.client.post("/orders", json={"amount": 5})
                end = time.monotonic() + 30
                while time.monotonic() < end and not server.client.get("/__motia/dead-letters").json():
                    time.sleep(0.1)
                driver.find_element(css, "#tab-steps").click()
                wait_for(driver, lambda d: d.find_elements(css, "button[data-step='Greeter']"))
                driver.find_element(css, "button[data-step='Greeter']").click()
                data = driver.find_element(css, "#inv-data")
                data.clear()
                data.send_keys('{"name": "Ada"}')
                driver.find_element(css, "#inv-run").click()
                wait_for(driver, lambda d: d.find_element(css, "#inv-result").text.startswith("{"))
                wait_for(driver, lambda d: d.find_elements(css, "tr[data-dead]"))
                shot("steps-triggers")
                server.stop()
        finally:
            driver.quit()
    return made


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    for path in take(target):
        print(path)
