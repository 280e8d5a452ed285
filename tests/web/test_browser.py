"""The page in a real headless Chromium against a real server and a real file store.

The store is written from this test process too (another process than the
server), as a step or a second runtime would. Outside CI a missing browser
skips with the reason; with CI=true it fails.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import motia_state as ms

from ..helpers import ON_CI, free_port
from .browser import find_browser, start_browser, wait_for
from .server import WorkbenchServer

_, _, WHY_NOT = find_browser()
if WHY_NOT:
    if ON_CI:
        pytest.fail(f"{WHY_NOT} (CI=true: a missing browser is a failure, not a skip)", pytrace=False)
    pytest.skip(WHY_NOT, allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

CSS = By.CSS_SELECTOR


def write(store: Path, fn: Any) -> Any:
    """Run ``fn(adapter)`` on the store from this process (not the server's)."""

    async def go() -> Any:
        async with ms.FileStateAdapter(str(store)) as adapter:
            return await fn(adapter)

    return asyncio.run(go())


def seed(store: Path) -> None:
    async def fill(a: ms.StateAdapter) -> None:
        await a.set("users", "alice", {"name": "Alice", "score": 120, "tags": ["vip"]})
        await a.set("users", "bob", {"name": "Bob", "score": 40})
        await a.set("orders", "count", 7)
        await a.set("orders", "queue", [1, 2, 3])
        await a.set("orders", "note", "hello")

    write(store, fill)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    seed(path)
    return path


@pytest.fixture
def page(browser: Any, store: Path) -> Iterator[Any]:
    with WorkbenchServer(f"file:{store}") as server:
        browser.get(server.url)
        wait_for(browser, lambda d: d.find_elements(CSS, "tr.entry"), what="the list")
        yield browser


def keys_shown(driver: Any) -> list[str]:
    # One script call: the list may be re-rendered between two WebDriver calls.
    return list(driver.execute_script("return [...document.querySelectorAll('tr.entry')].map(r => r.dataset.key)"))


def open_entry(driver: Any, key: str) -> None:
    click(driver, f"tr.entry[data-key='{key}']")
    wait_for(
        driver, lambda d: d.find_element(CSS, "#d-key").text == key and d.find_element(CSS, "#d-version").text != ""
    )


def text_of(driver: Any, selector: str) -> str:
    """The element's text, looked up again if the page re-rendered it meanwhile."""
    found: tuple[str] = wait_for(driver, lambda d: (str(d.find_element(CSS, selector).text),))
    return found[0]


def click(driver: Any, selector: str) -> None:
    """Click the element, looked up again if the page re-rendered it between the lookup and the click."""
    wait_for(driver, lambda d: d.find_element(CSS, selector).click() or True, what=f"a click on {selector}")


def test_browse_search_and_filter(page: Any) -> None:
    assert keys_shown(page) == ["count", "note", "queue", "alice", "bob"]
    groups = [th.text for th in page.find_elements(CSS, "tr.group-row th")]
    assert groups == ["orders", "users"]
    search = page.find_element(CSS, "#search")
    search.send_keys("ali")
    wait_for(page, lambda d: keys_shown(d) == ["alice"], what="search narrows the list")
    search.send_keys(Keys.CONTROL, "a")
    search.send_keys(Keys.BACKSPACE)
    wait_for(page, lambda d: len(keys_shown(d)) == 5)
    click(page, "#filter-box summary")
    page.find_element(CSS, "#f-path").send_keys("/score")
    Select(page.find_element(CSS, "#f-op")).select_by_value("gte")
    page.find_element(CSS, "#f-value").send_keys("100")
    click(page, "#f-add")
    wait_for(page, lambda d: keys_shown(d) == ["alice"], what="the filter keeps score >= 100")
    assert text_of(page, "#filter-count") == "1"
    click(page, "#f-clear")
    wait_for(page, lambda d: len(keys_shown(d)) == 5)
    # Keyboard: rows are focusable, arrows move, Enter opens.
    first = page.find_element(CSS, "tr.entry")
    first.send_keys(Keys.ARROW_DOWN)
    page.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(page, lambda d: d.find_element(CSS, "#d-key").text == "note")


def test_empty_filter_result_says_so(page: Any) -> None:
    click(page, "#filter-box summary")
    page.find_element(CSS, "#f-path").send_keys("/nothing")
    Select(page.find_element(CSS, "#f-op")).select_by_value("exists")
    click(page, "#f-add")
    wait_for(page, lambda d: d.find_element(CSS, "#empty").is_displayed())
    assert "No entry matches" in text_of(page, "#empty")


def test_edit_saves_and_a_conflict_shows_both_values(page: Any, store: Path) -> None:
    open_entry(page, "bob")
    editor = page.find_element(CSS, "#d-editor")
    assert json.loads(editor.get_attribute("value")) == {"name": "Bob", "score": 40}
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys('{"name": "Bob", "score": ')
    assert page.find_element(CSS, "#d-editor").get_attribute("aria-invalid") == "true"
    assert "Invalid JSON" in text_of(page, "#d-editor-status")
    assert not page.find_element(CSS, "#d-save").is_enabled()
    editor.send_keys("41}")
    assert page.find_element(CSS, "#d-dirty").is_displayed()
    click(page, "#d-save")
    wait_for(page, lambda d: "Saved" in d.find_element(CSS, "#d-save-result").text)
    assert write(store, lambda a: a.get("users", "bob")) == {"name": "Bob", "score": 41}
    # Someone else writes while this page edits: saving shows both, stores nothing.
    editor = page.find_element(CSS, "#d-editor")
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys('{"name": "Bob", "score": 99}')
    write(store, lambda a: a.set("users", "bob", {"name": "Robert", "score": 50}))
    click(page, "#d-save")
    wait_for(page, lambda d: d.find_element(CSS, "#conflict").is_displayed(), what="the conflict box")
    assert json.loads(text_of(page, "#c-current")) == {"name": "Robert", "score": 50}
    assert json.loads(text_of(page, "#c-mine")) == {"name": "Bob", "score": 99}
    assert write(store, lambda a: a.get("users", "bob")) == {"name": "Robert", "score": 50}
    click(page, "#c-rebase")
    wait_for(page, lambda d: not d.find_element(CSS, "#conflict").is_displayed())
    assert write(store, lambda a: a.get("users", "bob")) == {"name": "Bob", "score": 99}


def click_op(driver: Any, op: str) -> str:
    before = driver.find_element(CSS, "#op-result").text
    click(driver, f"#ops button[data-op='{op}']")
    wait_for(driver, lambda d: d.find_element(CSS, "#op-result").text not in ("", before), what=f"{op}'s result")
    return str(driver.find_element(CSS, "#op-result").text)


def fill(driver: Any, selector: str, text: str) -> None:
    field = driver.find_element(CSS, selector)
    field.clear()
    field.send_keys(text)


def test_every_atomic_button_shows_its_result(page: Any, store: Path) -> None:
    open_entry(page, "count")
    fill(page, "#op-delta", "0")
    assert click_op(page, "increment") == "increment → 7"  # a delta of 0 is 0
    fill(page, "#op-delta", "5")
    assert click_op(page, "increment") == "increment → 12"
    fill(page, "#op-delta", "2")
    assert click_op(page, "decrement") == "decrement → 10"
    assert page.find_elements(CSS, "#ops button[data-op='push']") == []  # fitted to a number

    open_entry(page, "queue")
    fill(page, "#op-items", "[4, 5]")
    assert click_op(page, "push") == "push → [1,2,3,4,5]"
    fill(page, "#op-items", "[0]")
    assert click_op(page, "unshift") == "unshift → [0,1,2,3,4,5]"
    assert click_op(page, "pop") == "pop → 5"
    assert click_op(page, "shift") == "shift → 0"
    assert write(store, lambda a: a.get("orders", "queue")) == [1, 2, 3, 4]

    open_entry(page, "alice")
    fill(page, "#op-field", "level")
    fill(page, "#op-field-value", '"gold"')
    assert click_op(page, "setField").startswith('setField → {"name":"Alice"')
    assert write(store, lambda a: a.get("users", "alice"))["level"] == "gold"
    assert click_op(page, "deleteField") == 'deleteField → {"name":"Alice","score":120,"tags":["vip"]}'
    fill(page, "#op-field", "")
    assert click_op(page, "setField").startswith("setField failed: INVALID_ARGUMENT")
    assert click_op(page, "exists") == "exists → true"

    open_entry(page, "note")
    fill(page, "#op-expected", '"nope"')
    fill(page, "#op-new", '"bye"')
    assert click_op(page, "compareAndSwap") == "compareAndSwap → false"
    assert page.find_element(CSS, "#op-expected").get_attribute("value") == '"hello"'  # the current value again
    fill(page, "#op-new", '"bye"')
    assert click_op(page, "compareAndSwap") == "compareAndSwap → true"
    click(page, "#ops button[data-op='delete']")
    page.switch_to.alert.accept()
    wait_for(
        page, lambda d: d.find_element(CSS, "#op-result").text == 'delete → "bye"', what=text_of(page, "#op-result")
    )
    assert not write(store, lambda a: a.exists("orders", "note"))


def add_record(driver: Any, type_: str, key: str, **fields: str) -> None:
    click(driver, "#tx-add")
    row = driver.find_elements(CSS, "#tx-rows li")[-1]
    Select(row.find_element(CSS, "[data-field=type]")).select_by_value(type_)
    row.find_element(CSS, "[data-field=key]").send_keys(key)
    for name, value in fields.items():
        field = row.find_element(CSS, f"[data-field={name}]")
        if field.tag_name == "select":
            Select(field).select_by_value(value)
        else:
            field.send_keys(value)


def test_transaction_with_a_failing_check_shows_its_failed_index(page: Any, store: Path) -> None:
    click(page, "#tab-tx")
    assert page.find_element(CSS, "#tx-empty").is_displayed()
    page.find_element(CSS, "#tx-group").send_keys("orders")
    add_record(page, "increment", "count", delta="1")
    add_record(page, "check", "count", op="gte", value="100")
    add_record(page, "push", "queue", items="[9]")
    click(page, "#tx-run")
    wait_for(page, lambda d: "failed at record 2 (failedIndex 1, CONFLICT)" in d.find_element(CSS, "#tx-summary").text)
    rows = page.find_elements(CSS, "#tx-rows li")
    assert "failed" in rows[1].get_attribute("class") and "CONFLICT" in rows[1].text
    assert write(store, lambda a: a.get("orders", "count")) == 7  # nothing stored
    # Reorder: move the check first, loosen it, run again.
    rows[1].find_element(CSS, "button[aria-label='Move up']").click()
    rows = page.find_elements(CSS, "#tx-rows li")
    assert rows[0].find_element(CSS, "[data-field=type]").get_attribute("value") == "check"
    value = rows[0].find_element(CSS, "[data-field=value]")
    value.clear()
    value.send_keys("7")
    click(page, "#tx-run")
    wait_for(page, lambda d: "committed" in d.find_element(CSS, "#tx-summary").text)
    assert [r.find_element(CSS, ".res").text for r in page.find_elements(CSS, "#tx-rows li")] == [
        "→ true",
        "→ 8",
        "→ [1,2,3,9]",
    ]
    add_record(page, "push", "count", items="[1]")
    click(page, "#tx-batch")
    wait_for(page, lambda d: "Batch ran" in d.find_element(CSS, "#tx-summary").text)
    last = page.find_elements(CSS, "#tx-rows li")[-1]
    assert "TYPE_MISMATCH" in last.text and "failed" in last.get_attribute("class")
    assert write(store, lambda a: a.get("orders", "count")) == 9


def test_steps_screen_without_an_app_says_so(page: Any) -> None:
    click(page, "#tab-steps")
    wait_for(page, lambda d: d.find_element(CSS, "#steps-empty").is_displayed())
    assert "No steps" in text_of(page, "#steps-empty")


@pytest.fixture
def dev_page(browser: Any, tmp_path: Path) -> Iterator[tuple[Any, Any, Path]]:
    from ..app.devserver import DevServer
    from .steps import write_app

    root = write_app(tmp_path / "app")
    store = tmp_path / "dev-store"
    with DevServer(root, "--state", f"file:{store}") as server:
        server.start(tmp_path)
        browser.get(server.url + "/__motia")
        wait_for(browser, lambda d: "live" in d.find_element(CSS, "#live").text or d.find_elements(CSS, "#empty"))
        yield browser, server, store
        server.stop()


def test_invoke_a_step_and_retry_a_dead_letter(dev_page: tuple[Any, Any, Path]) -> None:
    page, server, store = dev_page
    click(page, "#tab-steps")
    wait_for(page, lambda d: d.find_elements(CSS, "button[data-step='Greeter']"))
    steps_text = text_of(page, "#steps")
    assert "Greeter" in steps_text and "event greet" in steps_text and "api POST /orders" in steps_text
    click(page, "button[data-step='Greeter']")
    data = page.find_element(CSS, "#inv-data")
    data.send_keys(Keys.CONTROL, "a")
    data.send_keys('{"name": "Ann"}')
    click(page, "#inv-run")
    wait_for(page, lambda d: d.find_element(CSS, "#inv-result").text.startswith("{"), what="the step's result")
    assert json.loads(text_of(page, "#inv-result")) == {"hello": "Ann", "n": 1}
    assert "greeting number 1" in text_of(page, "#inv-logs")

    # A charge that fails every attempt becomes a dead letter of the event router.
    assert server.client.post("/orders", json={"amount": 5}).status_code == 202
    end = time.monotonic() + 30
    while time.monotonic() < end and not server.client.get("/__motia/dead-letters").json():
        time.sleep(0.1)
    click(page, "#trig-refresh")
    wait_for(page, lambda d: d.find_elements(CSS, "[data-trigger='events'] tr[data-dead]"), what="the dead letter")
    dead_row = text_of(page, "[data-trigger='events'] tr[data-dead]")
    assert "card declined" in dead_row and "Charger · topic charge" in dead_row
    click(page, "[data-trigger='events'] button[data-action='retry']")
    wait_for(page, lambda d: "failed again" in d.find_element(CSS, "#trig-result").text)
    write(store, lambda a: a.set("billing", "card-valid", True))
    click(page, "[data-trigger='events'] button[data-action='retry']")
    wait_for(page, lambda d: "it succeeded" in d.find_element(CSS, "#trig-result").text)
    wait_for(page, lambda d: not d.find_elements(CSS, "[data-trigger='events'] tr[data-dead]"))
    assert write(store, lambda a: a.get("billing", "charged")) == [{"amount": 5}]


def test_retry_and_drop_a_state_trigger_dead_letter(browser: Any, tmp_path: Path) -> None:
    from ..app.devserver import DevServer
    from .steps import write_trigger_app

    def put(server: Any, group: str, key: str, value: Any) -> None:
        r = server.client.post("/__motia/state", json={"groupId": group, "key": key, "value": value})
        assert r.status_code == 200, r.text

    def wait_dead(server: Any, count: int) -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            rows = server.client.get("/__motia/triggers").json()["triggers"]
            if sum(len(t["dead"]) for t in rows if t["kind"] == "state") >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"no state-trigger dead letter:\n{server.output()}")

    dead_rows = ".trigger:not([data-trigger='events']) tr[data-dead]"
    with DevServer(write_trigger_app(tmp_path / "app")) as server:
        server.start(tmp_path)
        put(server, "billing", "hold", True)
        put(server, "o1", "order", {"n": 1})
        wait_dead(server, 1)
        browser.get(server.url + "/__motia")
        click(browser, "#tab-steps")
        click(browser, "#trig-refresh")
        wait_for(browser, lambda d: d.find_elements(CSS, dead_rows), what="the state trigger's dead letter")
        row = text_of(browser, dead_rows)
        assert "billing on hold" in row and "o1 / order" in row
        # Event dead letters are listed beside it, none here.
        assert "No dead letters." in text_of(browser, "[data-trigger='events']")
        retry = f"{dead_rows} button[data-action='retry']"
        click(browser, retry)
        wait_for(browser, lambda d: "failed again" in d.find_element(CSS, "#trig-result").text)
        assert len(browser.find_elements(CSS, dead_rows)) == 1
        put(server, "billing", "hold", False)
        click(browser, retry)
        wait_for(browser, lambda d: "it succeeded" in d.find_element(CSS, "#trig-result").text)
        wait_for(browser, lambda d: not d.find_elements(CSS, dead_rows))
        seen = server.client.get("/__motia/state", params={"groupId": "billing", "key": "seen"}).json()
        assert [e["value"] for e in seen] == [[{"n": 1}]]

        put(server, "billing", "hold", True)
        put(server, "o2", "order", {"n": 2})
        wait_dead(server, 1)
        click(browser, "#trig-refresh")
        wait_for(browser, lambda d: d.find_elements(CSS, dead_rows))
        click(browser, f"{dead_rows} button[data-action='drop']")
        wait_for(browser, lambda d: "Dropped" in d.find_element(CSS, "#trig-result").text)
        wait_for(browser, lambda d: not d.find_elements(CSS, dead_rows))
        rows = server.client.get("/__motia/triggers").json()["triggers"]
        assert [t["dead"] for t in rows if t["kind"] == "state"] == [[]]
        server.stop()


def test_the_standalone_workbench_shows_a_stored_trigger_queues_a_retry_and_drops_its_dead_letter(
    browser: Any, tmp_path: Path
) -> None:
    from .stored import start_failing

    store, work, started = tmp_path / "store", tmp_path / "work", []
    try:
        start_failing(store, work, started, ["alice"]).stop()  # a dead letter left in the store, no runtime after
    finally:
        for runtime in started:
            runtime.kill()
    dead_rows = "[data-trigger='scores'] tr[data-dead]"
    with WorkbenchServer(f"file:{store}") as server:
        browser.get(server.url)
        click(browser, "#tab-steps")
        wait_for(browser, lambda d: d.find_elements(CSS, dead_rows), what="the stored trigger's dead letter")
        trigger = text_of(browser, "[data-trigger='scores']")
        assert "state" in trigger and "idle" in trigger and "no runtime runs it" in trigger
        assert "users / alice" in text_of(browser, dead_rows) and "refused alice" in text_of(browser, dead_rows)

        # No runtime runs the trigger: the retry is a request, and the page says so.
        click(browser, f"{dead_rows} button[data-action='retry']")
        wait_for(browser, lambda d: "queued" in d.find_element(CSS, "#trig-result").text)
        assert "no runtime runs trigger 'scores'" in text_of(browser, "#trig-result")
        wait_for(browser, lambda d: "retry requested" in d.find_element(CSS, dead_rows).text)

        click(browser, f"{dead_rows} button[data-action='drop']")
        wait_for(browser, lambda d: "Dropped" in d.find_element(CSS, "#trig-result").text)
        wait_for(browser, lambda d: not d.find_elements(CSS, dead_rows))
        assert "No dead letters." in text_of(browser, "[data-trigger='scores']")
    with WorkbenchServer(f"file:{store}") as server:  # gone from the store, not only from the page
        [row] = httpx.get(server.base + "/__motia/triggers").json()["triggers"]
        assert (row["name"], row["dead"], row["deadLetters"]) == ("scores", [], 0)


def row_value(driver: Any, key: str) -> str:
    return str(
        driver.execute_script(
            "const r = document.querySelector(`tr.entry[data-key='${arguments[0]}']`);"
            "return r ? r.querySelector('td.preview').textContent + (r.classList.contains('flash') ? ' *' : '') : '';",
            key,
        )
    )


def test_live_update_when_another_process_writes(page: Any, store: Path) -> None:
    wait_for(page, lambda d: d.find_element(CSS, "#live").text == "live", what="the stream opens")
    open_entry(page, "count")
    write(store, lambda a: a.increment("orders", "count", 5))
    wait_for(page, lambda d: row_value(d, "count") == "12 *", what="the row updates and is highlighted")
    wait_for(page, lambda d: "12" in d.find_element(CSS, "#d-tree").text, what="the open entry follows")
    assert json.loads(page.find_element(CSS, "#d-editor").get_attribute("value")) == 12
    write(store, lambda a: a.set("orders", "new-one", {"x": 1}))
    wait_for(page, lambda d: row_value(d, "new-one") == '{"x":1} *', what="a new entry appears in place")
    assert keys_shown(page)[:4] == ["count", "new-one", "note", "queue"]
    write(store, lambda a: a.delete("orders", "note"))
    wait_for(page, lambda d: "note" not in keys_shown(d), what="a deleted entry leaves")


def test_history_diff_and_restore(page: Any, store: Path) -> None:
    write(store, lambda a: a.set_field("users", "bob", "score", 45))
    write(store, lambda a: a.set_field("users", "bob", "score", 50))
    open_entry(page, "bob")
    wait_for(page, lambda d: len(d.find_elements(CSS, "#timeline li")) == 3, what="three changes")
    items = page.find_elements(CSS, "#timeline li")
    assert [i.find_element(CSS, "strong").text for i in items] == ["setField", "setField", "set"]
    assert "setField" in text_of(page, "#d-last")
    items[2].send_keys(Keys.ENTER)  # the first value, by keyboard
    wait_for(page, lambda d: d.find_element(CSS, "#h-diff-box").is_displayed())
    removed = [s.text for s in page.find_elements(CSS, "#h-diff .del")]
    added = [s.text for s in page.find_elements(CSS, "#h-diff .add")]
    assert any('"score": 40' in line for line in removed) and any('"score": 50' in line for line in added)
    click(page, "#h-restore")
    wait_for(page, lambda d: d.find_element(CSS, "#h-restore-result").text == "Restored.")
    assert write(store, lambda a: a.get("users", "bob")) == {"name": "Bob", "score": 40}
    wait_for(page, lambda d: len(d.find_elements(CSS, "#timeline li")) == 4, what="the restore is a change too")


def test_token_in_the_fragment_opens_a_session_and_leaves_the_address_bar(browser: Any, store: Path) -> None:
    with WorkbenchServer(f"file:{store}", token="s3cret-t0ken") as server:
        browser.delete_all_cookies()
        browser.get(server.base + "/__motia/")  # no token: the page asks for it
        wait_for(browser, lambda d: d.find_element(CSS, "#token-prompt").is_displayed(), what="the token prompt")
        browser.find_element(CSS, "#token-input").send_keys("wrong", Keys.ENTER)
        wait_for(browser, lambda d: "not the token" in d.find_element(CSS, "#token-error").text)
        browser.get(server.url)  # the printed URL, with #token
        wait_for(browser, lambda d: len(keys_shown(d)) == 5, what="the list behind the session cookie")
        assert "s3cret" not in browser.current_url
        cookie = browser.get_cookie(f"motia_session_{server.base.rsplit(':', 1)[1]}")  # a name per port
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "s3cret" not in cookie["value"]


def test_a_diff_of_large_values_stays_bounded_and_folds_what_did_not_change(page: Any, store: Path) -> None:
    # A line-by-line table of two large values would take the tab's memory:
    # past a bound the differing part shows as removed then added, and long
    # unchanged runs fold to a few lines of context.
    async def fill(a: ms.StateAdapter) -> None:
        await a.set("big", "list", list(range(5000)))
        await a.push("big", "list", "new")
        await a.set("big", "other", [f"a{i}" for i in range(2100)])
        await a.set("big", "other", [f"b{i}" for i in range(2100)])

    write(store, fill)
    page.refresh()
    wait_for(page, lambda d: "list" in keys_shown(d), what="the new entries")
    previews = "return [...document.querySelectorAll('#timeline li .mono')].map(m => m.textContent)"
    for key, start in (("list", "[0,"), ("other", '["')):
        page.execute_script(
            "[...document.querySelectorAll('tr.entry')].find(r => r.dataset.group === 'big' && r.dataset.key === arguments[0]).click()",
            key,
        )
        # Its own two changes: the timeline of the entry shown before stays until this one's history arrives.
        wait_for(
            page,
            lambda d, start=start: [p[: len(start)] for p in d.execute_script(previews)] == [start, start],
            what=f"the history of {key}",
        )
        page.execute_script("document.querySelectorAll('#timeline li')[1].click()")
        wait_for(page, lambda d: d.find_element(CSS, "#h-diff-box").is_displayed(), timeout=60)
        spans = page.execute_script(
            "return [...document.querySelectorAll('#h-diff span')].map(s => [s.className, s.textContent])"
        )
        if key == "list":
            changed = [(c, " ".join(t.split())) for c, t in spans if c in ("del", "add")]
            assert changed == [("del", "- 4999"), ("add", "+ 4999,"), ("add", '+ "new"')]
            assert [t.strip() for c, t in spans if "fold" in c] == ["… 4997 unchanged lines"]
            assert len(spans) < 20
        else:
            assert any("too large to compare line by line" in t for _, t in spans)
            assert sum(c == "del" for c, _ in spans) == 2100 and sum(c == "add" for c, _ in spans) == 2100


def test_a_page_of_another_site_cannot_frame_the_workbench(browser: Any, store: Path, tmp_path: Path) -> None:
    # Framed, the page's own requests would carry its own Origin: a page of
    # another site (here another port: another origin) could lay it under its
    # buttons and have a person click "delete" unawares. The browser must
    # refuse to show it in a frame.
    with WorkbenchServer(f"file:{store}") as server:
        (tmp_path / "evil.html").write_text(
            f'<iframe id="f" src="{server.url}" onload="window.framed = true"></iframe>'
        )
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
        other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=other.serve_forever, daemon=True)
        thread.start()
        try:
            browser.get(f"http://127.0.0.1:{other.server_address[1]}/evil.html")
            wait_for(browser, lambda d: d.execute_script("return window.framed === true"), what="the frame's load")
            browser.switch_to.frame(browser.find_element(CSS, "#f"))
            try:
                assert browser.find_elements(CSS, "#rows") == [], "the workbench showed inside another site's frame"
            finally:
                browser.switch_to.default_content()
        finally:
            other.shutdown()
            other.server_close()
            thread.join(10)
        # Opened directly, it works as ever.
        browser.get(server.url)
        wait_for(browser, lambda d: len(keys_shown(d)) == 5, what="the list")


def test_a_fragment_that_is_not_percent_encoded_does_not_stop_the_page(browser: Any, store: Path) -> None:
    # "#100%" cannot be decoded: the page must start all the same, with or without a token.
    with WorkbenchServer(f"file:{store}") as server:
        browser.get(server.url + "#100%")
        wait_for(browser, lambda d: len(keys_shown(d)) == 5, what="the list")
    with WorkbenchServer(f"file:{store}", token="t%1") as server:
        browser.delete_all_cookies()
        browser.get(server.base + "/__motia/#t%1")  # the token as typed, not encoded
        wait_for(browser, lambda d: len(keys_shown(d)) == 5, what="the list behind the session cookie")


def test_new_entry_creates_and_never_replaces_an_existing_one(page: Any, store: Path) -> None:
    def create(group: str, key: str, value: str) -> None:
        if not page.find_element(CSS, "#new-entry").is_displayed():
            click(page, "#new-entry-toggle")
        for selector, text in (("#ne-group", group), ("#ne-key", key), ("#ne-value", value)):
            field = page.find_element(CSS, selector)
            field.clear()
            field.send_keys(text)
        page.find_element(CSS, "#ne-value").submit()

    create("users", "carol", '{"name": "Carol"}')
    wait_for(page, lambda d: d.find_element(CSS, "#d-key").text == "carol", what="the new entry opened")
    assert write(store, lambda a: a.get("users", "carol")) == {"name": "Carol"}
    # A person who does not see that alice exists (another page of the list, a step that just wrote it).
    create("users", "alice", '{"name": "Mallory"}')
    wait_for(page, lambda d: "already exists" in d.find_element(CSS, "#ne-error").text, what="the refusal")
    assert write(store, lambda a: a.get("users", "alice")) == {"name": "Alice", "score": 120, "tags": ["vip"]}


def test_a_burst_of_writes_to_the_selected_entry_reloads_it_a_few_times_not_once_per_change(
    page: Any, store: Path
) -> None:
    # A step writing in a loop: the page must keep up with the newest value
    # without a pair of requests per change (which left it far behind).
    open_entry(page, "count")
    page.execute_script("performance.clearResourceTimings(); performance.setResourceTimingBufferSize(100000)")

    async def burst(a: ms.StateAdapter) -> None:
        for _ in range(300):
            await a.increment("orders", "count")

    write(store, burst)
    wait_for(page, lambda d: d.find_element(CSS, "#d-tree").text == "307", timeout=120, what="the newest value")
    wait_for(page, lambda d: len(d.find_elements(CSS, "#timeline li")) >= 50, what="the history")
    reloads = page.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('key=count')).length"
    )
    assert 1 <= reloads <= 60, reloads


def test_a_burst_of_new_and_removed_entries_redraws_the_list_a_few_times_not_once_per_entry(
    page: Any, store: Path
) -> None:
    # A step creating entries in a loop: one redraw per entry froze the page for minutes.
    page.execute_script(
        "window.redraws = 0; const draw = window.renderList;"
        "window.renderList = function () { window.redraws += 1; return draw.apply(this, arguments); };"
    )

    async def create(a: ms.StateAdapter) -> None:
        for i in range(1000):
            await a.set("burst", f"k{i:04}", i)

    write(store, create)
    count = "return document.querySelectorAll('tr.entry').length"
    wait_for(page, lambda d: d.execute_script(count) == 1005, timeout=120, what="every new row")
    assert 1 <= page.execute_script("return window.redraws") <= 200

    page.execute_script("window.redraws = 0")
    write(store, lambda a: a.clear("burst"))
    wait_for(page, lambda d: d.execute_script(count) == 5, timeout=120, what="the removed rows gone")
    assert 1 <= page.execute_script("return window.redraws") <= 200


def test_a_large_value_shows_in_parts_and_fills_the_editor_when_asked(page: Any, store: Path) -> None:
    # Drawn whole (a node per element, a text area of megabytes, two one-line
    # fields holding the whole value) a large value kept the page busy for seconds.
    async def fill(a: ms.StateAdapter) -> None:
        await a.set("big", "list", list(range(50000)))
        await a.set("big", "text", "x" * (1 << 20))

    write(store, fill)
    page.refresh()
    wait_for(page, lambda d: "list" in keys_shown(d), what="the new entries")
    open_entry(page, "list")
    children = "return document.querySelectorAll('#d-tree > details > .leaf').length"
    assert page.execute_script(children) == 200
    assert "Show 200 more (49800 not shown)" in text_of(page, "#d-tree button.more")
    click(page, "#d-tree button.more")
    wait_for(page, lambda d: d.execute_script(children) == 400, what="200 more")
    assert not page.find_element(CSS, "#d-editor").is_displayed()
    assert page.find_element(CSS, "#op-expected").get_attribute("value") == ""  # not prefilled with it all
    assert page.find_element(CSS, "#d-save").get_attribute("disabled") is not None
    click(page, "#d-editor-load")
    wait_for(page, lambda d: d.find_element(CSS, "#d-editor").is_displayed(), what="the editor")
    assert json.loads(page.find_element(CSS, "#d-editor").get_attribute("value")) == list(range(50000))
    page.execute_script(
        "const e = document.querySelector('#d-editor'); e.value = '[1, 2]'; e.dispatchEvent(new Event('input'))"
    )
    click(page, "#d-save")
    wait_for(page, lambda d: d.find_element(CSS, "#d-save-result").text.startswith("Saved"), what="the save")
    assert write(store, lambda a: a.get("big", "list")) == [1, 2]

    open_entry(page, "text")
    leaf = text_of(page, "#d-tree .leaf")
    assert leaf.startswith('"xxx') and "more characters (the editor shows them all)" in leaf and len(leaf) < 3000


def test_the_page_stays_live_across_a_restart_of_dev_on_a_memory_store(browser: Any, tmp_path: Path) -> None:
    # The restarted server no longer has the cursor the page resumes from and
    # refuses it; a browser does not retry a refusal, so the page went deaf.
    from ..app.devserver import DevServer

    root = tmp_path / "app"
    root.mkdir()
    port = free_port()

    def put(server: Any, key: str) -> None:
        r = server.client.post("/__motia/state", json={"groupId": "g", "key": key, "value": 1})
        assert r.status_code == 200, r.text

    with DevServer(root, port=port).start(tmp_path) as first:
        browser.get(first.url + "/__motia/")
        wait_for(browser, lambda d: d.find_element(CSS, "#live").text == "live", what="the change stream")
        for i in range(5):
            put(first, f"old{i}")
        wait_for(browser, lambda d: len(keys_shown(d)) == 5, what="the first server's entries")
        assert first.stop() == 0
    with DevServer(root, port=port).start(tmp_path) as second:
        put(second, "new")  # the first record of a new store: the page's cursor is past it
        wait_for(browser, lambda d: keys_shown(d) == ["new"], timeout=60, what="the new server's entry")
        put(second, "newer")
        wait_for(browser, lambda d: keys_shown(d) == ["new", "newer"], timeout=60, what="live again")
        assert second.stop() == 0


def test_a_write_from_a_step_while_a_person_types_an_operation_keeps_their_input_and_focus(
    page: Any, store: Path
) -> None:
    open_entry(page, "count")
    delta = page.find_element(CSS, "#op-delta")
    delta.clear()
    delta.send_keys("5")
    new = page.find_element(CSS, "#op-new")
    new.clear()
    new.send_keys("100")
    page.find_element(CSS, "#op-delta").click()  # typing the delta when the step writes
    write(store, lambda a: a.set("orders", "count", 8))
    wait_for(page, lambda d: d.find_element(CSS, "#d-tree").text == "8", what="the step's value")
    assert page.execute_script("return document.activeElement.id") == "op-delta"
    assert page.find_element(CSS, "#op-delta").get_attribute("value") == "5"
    assert page.find_element(CSS, "#op-new").get_attribute("value") == "100"  # typed: kept
    assert page.find_element(CSS, "#op-expected").get_attribute("value") == "8"  # as filled: follows the value
    # A hand-typed "expected" stays as typed: following the step's write would let the swap overwrite it.
    fill(page, "#op-expected", "8")
    page.find_element(CSS, "#op-expected").send_keys(Keys.BACKSPACE, "9")
    write(store, lambda a: a.set("orders", "count", 10))
    wait_for(page, lambda d: d.find_element(CSS, "#d-tree").text == "10", what="the step's second value")
    assert page.find_element(CSS, "#op-expected").get_attribute("value") == "9"
    page.find_element(CSS, "#op-delta").click()
    page.switch_to.active_element.send_keys("0")  # the typing goes on where it was
    assert page.find_element(CSS, "#op-delta").get_attribute("value") == "50"


def test_a_write_from_a_step_keeps_the_picked_change_and_its_restore_within_reach(page: Any, store: Path) -> None:
    write(store, lambda a: a.set_field("users", "bob", "score", 45))
    open_entry(page, "bob")
    wait_for(page, lambda d: len(d.find_elements(CSS, "#timeline li")) == 2, what="two changes")
    page.find_elements(CSS, "#timeline li")[1].click()  # the first value
    wait_for(page, lambda d: d.find_element(CSS, "#h-diff-box").is_displayed())
    write(store, lambda a: a.set_field("users", "bob", "score", 60))  # a step writes meanwhile
    wait_for(page, lambda d: len(d.find_elements(CSS, "#timeline li")) == 3, what="the step's change")
    assert page.find_element(CSS, "#h-diff-box").is_displayed()
    picked = page.find_elements(CSS, "#timeline li[aria-selected='true']")
    assert [li.get_attribute("data-index") for li in picked] == ["2"]  # the same change, one further down
    added = [s.text for s in page.find_elements(CSS, "#h-diff .add")]
    assert any('"score": 60' in line for line in added)  # against the new current value
    click(page, "#h-restore")
    wait_for(page, lambda d: d.find_element(CSS, "#h-restore-result").text == "Restored.")
    assert write(store, lambda a: a.get("users", "bob")) == {"name": "Bob", "score": 40}
