"""The Google Sheets source against a fake token endpoint and Sheets API on 127.0.0.1.

google-auth signs a real JWT with a throwaway key and exchanges it at the fake token endpoint; gspread's
HTTP client talks to the fake API through `TUTTLE_GOOGLE_API_URL`. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import run_cli
from fake_google import PRIVATE_KEY_ID, SERVICE_ACCOUNT_EMAIL, FakeGoogle
from season import dataset_keys, frame_number, manifest_entry, put_manifest, put_sources

from tuttle_prep.core.frame_table import SHEET_HEADER
from tuttle_prep.core.sheets import SheetReader
from tuttle_prep.edges.csv_sheets import CsvFileSource
from tuttle_prep.edges.google_sheets import (
    SCOPES,
    GoogleOptions,
    GoogleSheetSource,
    RateLimiter,
    header_problems,
    location_problem,
    spreadsheet_key,
)
from tuttle_prep.errors import ConfigError, SheetError
from tuttle_prep.settings import Settings

HEADER = list(SHEET_HEADER)
BASE = "media.angel-nft.com/tuttle_twins/default_eng/v1/frames/thumbnails/"
#: back-off waits of a few milliseconds, so retry tests stay fast
FAST = {"backoff_multiplier": 0.005, "backoff_max": 0.02, "backoff_jitter": 0.005}


def key(n: int) -> str:
    """A 44-character spreadsheet id, like Google's."""
    return f"1tt{n:02d}" + "Xy_z-" * 7 + "abcd"


def share_link(k: str) -> str:
    return f"https://docs.google.com/spreadsheets/d/{k}/edit?usp=sharing"


def row(frame: str, unsupervised: str = "", supervised: str = "", jonny: str = "", index: str = "0") -> list[str]:
    return [BASE, index, frame, unsupervised, supervised, jonny, "[Emily, Space Tunnel]"]


@pytest.fixture
def fake(fake_google: FakeGoogle) -> FakeGoogle:
    return fake_google


def make_source(fake: FakeGoogle, tmp_path: Path, **overrides) -> GoogleSheetSource:
    settings = Settings(google_credentials_file=fake.key_file(tmp_path))
    return GoogleSheetSource.from_settings(settings, env={"TUTTLE_GOOGLE_API_URL": fake.url}, **{**FAST, **overrides})


# ------------------------------------------------------------------------------------------ reading
def test_reads_first_worksheet_as_text(fake: FakeGoogle, tmp_path: Path) -> None:
    rows = [
        HEADER,
        row("TT_S01_E01_FRM-00-00-08-12", "Common", "", "Rare", index="0"),
        [BASE, "007", "TT_S01_E01_FRM-00-00-09-01", "Trash"],  # ragged: Google drops trailing empty cells
    ]
    fake.add_sheet(
        key(1), rows, title="Tuttle Twins S01E01", worksheets=["Frames", "Notes"], other_rows={"Notes": [["x"]]}
    )
    source = make_source(fake, tmp_path)

    table = source.read(share_link(key(1)), title="Tuttle Twins S01E01", episode_id="S01E01")

    assert list(table.columns) == HEADER
    assert table.to_dict("records")[1] == dict(
        zip(HEADER, [BASE, "007", "TT_S01_E01_FRM-00-00-09-01", "Trash", "", "", ""], strict=True)
    )
    assert table["ROW_INDEX"].tolist() == ["0", "007"]  # text stays text
    assert all(isinstance(v, str) for v in table.to_numpy().ravel())
    assert table.attrs == {  # the gid is the sheetId of the worksheet with index 0 (for links to its cells)
        "sheet_title": "Tuttle Twins S01E01",
        "worksheet_title": "Frames",
        "spreadsheet_id": key(1),
        "worksheet_gid": 1000,
    }
    values = [h for h in fake.api_hits() if "/values/" in h.path]
    assert len(values) == 1 and "Frames" in values[0].path  # the worksheet with index 0, not the first listed
    assert values[0].query["valueRenderOption"] == ["FORMATTED_VALUE"]
    [claims] = fake.claims  # a real signed JWT was verified and exchanged
    assert claims["iss"] == SERVICE_ACCOUNT_EMAIL
    assert claims["scope"] == " ".join(SCOPES) == "https://www.googleapis.com/auth/spreadsheets.readonly"


def test_one_client_and_token_for_many_sheets(fake: FakeGoogle, tmp_path: Path) -> None:
    for n in range(4):
        fake.add_sheet(key(n), [HEADER, row(f"TT_S01_E0{n}_FRM-00-00-00-00", "Rare")])
    source = make_source(fake, tmp_path)
    with ThreadPoolExecutor(4) as pool:
        tables = list(pool.map(lambda n: source.read(share_link(key(n))), range(4)))
    assert [t["FRAME NUMBER"].tolist() for t in tables] == [[f"TT_S01_E0{n}_FRM-00-00-00-00"] for n in range(4)]
    assert len(fake.claims) == 1  # one token shared by every thread
    assert len(fake.api_hits()) == 8  # two calls per sheet: metadata, values


@pytest.mark.parametrize(
    "location",
    [
        "https://docs.google.com/spreadsheets/d/{k}/edit?usp=sharing",
        "https://docs.google.com/spreadsheets/d/{k}/edit#gid=1690818184",
        "https://docs.google.com/spreadsheets/u/1/d/{k}/htmlview",
        "  https://docs.google.com/spreadsheets/d/{k}  ",
        "{k}",
    ],
)
def test_opens_share_link_url_or_key(fake: FakeGoogle, tmp_path: Path, location: str) -> None:
    fake.add_sheet(key(7), [HEADER, row("TT_S01_E07_FRM-00-00-00-00", "Rare")])
    source = make_source(fake, tmp_path)
    location = location.format(k=key(7))
    assert source.can_read(location)
    assert source.read(location)["FRAME NUMBER"].tolist() == ["TT_S01_E07_FRM-00-00-00-00"]


def test_location_forms() -> None:
    assert spreadsheet_key(share_link(key(1))) == key(1)
    assert spreadsheet_key(f"https://docs.google.com/spreadsheet/ccc?key={key(2)}&usp=drive_web") == key(2)
    assert location_problem(share_link(key(1))) is None
    assert "Publish to web" in location_problem("https://docs.google.com/spreadsheets/d/e/2PACX-1vQabc/pubhtml")
    assert "not to a spreadsheet" in location_problem("https://docs.google.com/document/d/" + key(1) + "/edit")
    assert "without a spreadsheet id" in location_problem("https://docs.google.com/spreadsheets/u/0/")
    assert "not a Google Sheets link" in location_problem("https://drive.google.com/file/d/abc/view")
    with pytest.raises(SheetError, match=r"^https://docs.google.com/document/d/x: a Google Docs link"):
        spreadsheet_key("https://docs.google.com/document/d/x")


def test_reader_hands_google_links_to_the_source(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(1), [HEADER, row("TT_S01_E01_FRM-00-00-00-00", "Rare")])
    reader = SheetReader([make_source(fake, tmp_path), CsvFileSource()])
    assert len(reader.read(share_link(key(1)))) == 1
    with pytest.raises(SheetError, match="not to a spreadsheet"):
        reader.read("https://docs.google.com/document/d/" + key(1) + "/edit")


def test_headers_are_returned_as_written_and_checked_loosely(fake: FakeGoogle, tmp_path: Path) -> None:
    renamed = ["  Frame Number ", "unsupervised classification", "JONNY\u2019s RECLASSIFICATION", "Notes"]
    fake.add_sheet(key(1), [renamed, ["TT_S01_E01_FRM-00-00-00-00", "Common", "Legendary", ""]])
    table = make_source(fake, tmp_path).read(share_link(key(1)))
    assert list(table.columns) == renamed  # the core's frame_table normalizes; the source does not
    assert header_problems(table.columns) == []
    assert header_problems(["FRAME  NUMBER", "jonny's reclassification"]) == []

    [problem] = header_problems(["FRAME_NO", "JONNY's RECLASSIFICATION"])
    assert "no 'FRAME NUMBER' column" in problem and "'FRAME_NO'" in problem
    [problem] = header_problems(["FRAME NUMBER", "NOTES"])
    assert "none of the rarity columns" in problem


def test_blank_rows_at_the_end_are_dropped(fake: FakeGoogle, tmp_path: Path) -> None:
    rows = [
        HEADER,
        row("TT_S01_E01_FRM-00-00-00-00", "Rare"),
        [],  # a blank row in the middle stays (the core reports or skips it)
        row("TT_S01_E01_FRM-00-00-00-01", "Common"),
        ["", "  "],
        [],
        [""] * 7,
    ]
    fake.add_sheet(key(1), rows)
    table = make_source(fake, tmp_path).read(share_link(key(1)))
    assert table["FRAME NUMBER"].tolist() == ["TT_S01_E01_FRM-00-00-00-00", "", "TT_S01_E01_FRM-00-00-00-01"]


def test_empty_sheet_is_a_sheet_error(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(1), [[], [""]])
    with pytest.raises(SheetError, match="the sheet is empty"):
        make_source(fake, tmp_path).read(share_link(key(1)))


# ------------------------------------------------------------------------------------------ failures
def test_not_shared_403_names_sheet_and_service_account(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(2), [HEADER], status=403)
    with pytest.raises(SheetError) as caught:
        make_source(fake, tmp_path).read(share_link(key(2)), title="Tuttle Twins S01E02", episode_id="S01E02")
    message = str(caught.value)
    assert "'Tuttle Twins S01E02'" in message
    assert share_link(key(2)) in message
    assert SERVICE_ACCOUNT_EMAIL in message
    assert "no access (403): share the sheet with the service account" in message
    assert len(fake.api_hits()) == 1  # a permission error is not retried


def test_not_found_404(fake: FakeGoogle, tmp_path: Path) -> None:
    with pytest.raises(SheetError) as caught:
        make_source(fake, tmp_path).read(share_link(key(9)), title="Tuttle Twins S01E09")
    message = str(caught.value)
    assert "not found (404)" in message and "check the link in the manifest" in message
    assert "'Tuttle Twins S01E09'" in message and share_link(key(9)) in message and SERVICE_ACCOUNT_EMAIL in message
    assert len(fake.api_hits()) == 1


def test_429_then_success(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(3), [HEADER, row("TT_S01_E03_FRM-00-00-00-00", "Rare")], fail_first=[429, 429])
    table = make_source(fake, tmp_path, attempts=3).read(share_link(key(3)))
    assert len(table) == 1
    assert [h.status for h in fake.api_hits()] == [429, 429, 200, 200]


def test_persistent_429_gives_up_after_the_attempts(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(3), [HEADER], status=429)
    with pytest.raises(SheetError) as caught:
        make_source(fake, tmp_path, attempts=3).read(share_link(key(3)), title="S01E03 sheet")
    message = str(caught.value)
    assert "quota exhausted (3 attempts" in message and "'S01E03 sheet'" in message
    assert "TUTTLE_GOOGLE_CONCURRENCY" in message
    assert [h.status for h in fake.api_hits()] == [429, 429, 429]


def test_server_errors_with_html_bodies_are_retried(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(4), [HEADER, row("TT_S01_E04_FRM-00-00-00-00", "Rare")], fail_first=[502, 503], html_errors=True)
    assert len(make_source(fake, tmp_path).read(share_link(key(4)))) == 1
    assert [h.status for h in fake.api_hits()] == [502, 503, 200, 200]


def test_persistent_server_error(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(4), [HEADER], status=503)
    with pytest.raises(SheetError, match=r"kept failing \(HTTP 503 The service is currently unavailable.; 2 attempts"):
        make_source(fake, tmp_path, attempts=2).read(share_link(key(4)))


def test_read_timeout(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(5), [HEADER], delay=1.0)
    source = make_source(fake, tmp_path, attempts=2, read_timeout=0.2, connect_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(SheetError) as caught:
        source.read(share_link(key(5)), title="Slow sheet")
    assert time.monotonic() - started < 0.9  # two attempts of 0.2 s, not the server's 1 s each
    message = str(caught.value)
    assert "did not answer within 0.2s (2 attempts" in message and "TUTTLE_GOOGLE_TIMEOUT" in message


def test_unconverted_excel_file(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(6), [HEADER], status=400)
    with pytest.raises(SheetError, match="not a Google Sheet .an uploaded Excel file"):
        make_source(fake, tmp_path).read(share_link(key(6)))


def test_rejected_key(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_sheet(key(1), [HEADER])
    fake.token_status = 400
    with pytest.raises(SheetError) as caught:
        make_source(fake, tmp_path).read(share_link(key(1)))
    message = str(caught.value)
    assert "refused the service-account key" in message and SERVICE_ACCOUNT_EMAIL in message
    assert "invalid_grant" in message and "GOOGLE_DRIVE_CREDENTIALS_FILE" in message
    assert fake.api_hits() == []


def test_concurrency_is_bounded_by_the_source(fake: FakeGoogle, tmp_path: Path) -> None:
    for n in range(8):
        fake.add_sheet(key(n), [HEADER, row(f"TT_S01_E0{n}_FRM-00-00-00-00", "Rare")], delay=0.03)
    source = make_source(fake, tmp_path, concurrency=2)
    with ThreadPoolExecutor(8) as pool:  # the job's sheet pool is wider than the source allows
        tables = list(pool.map(lambda n: source.read(share_link(key(n))), range(8)))
    assert len(tables) == 8
    assert fake.max_in_flight == 2


def test_rate_limiter_keeps_to_the_window() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3, clock=lambda: now[0], sleep=sleep)
    assert [limiter.acquire() for _ in range(3)] == [0, 0, 0]
    now[0] = 10.0
    assert limiter.acquire() == pytest.approx(50.0)  # the 4th waits until the 1st leaves the window
    assert now[0] == pytest.approx(60.0)
    assert limiter.acquire() == 0  # the 2nd and 3rd (t=0) have left too
    assert sleeps == [pytest.approx(50.0)]


def test_requests_are_paced_by_the_rate_limit(fake: FakeGoogle, tmp_path: Path) -> None:
    for n in range(2):
        fake.add_sheet(key(n), [HEADER, row(f"TT_S01_E0{n}_FRM-00-00-00-00", "Rare")])
    source = make_source(fake, tmp_path, requests_per_minute=2, rate_window=0.3)
    started = time.monotonic()
    source.read(share_link(key(0)))  # two requests: the window is full
    assert time.monotonic() - started < 0.25
    source.read(share_link(key(1)))  # waits for the window to pass
    assert time.monotonic() - started >= 0.3


# --------------------------------------------------------------------------------------- settings
def write_key(tmp_path: Path, info: dict) -> Path:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


BAD_PEM = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: None, "GOOGLE_DRIVE_CREDENTIALS_FILE is not set"),
        (lambda tmp: tmp / "missing.json", "no such file"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: (tmp / "k.json").write_text("{not json") and tmp / "k.json", "not a JSON key file"),
        (lambda tmp: write_key(tmp, ["service_account"]), "not a service-account JSON key file"),
        (lambda tmp: write_key(tmp, {"type": "authorized_user"}), "type 'authorized_user', not a service-account"),
        (
            lambda tmp: write_key(tmp, {"type": "service_account", "client_email": "a@b.c", "token_uri": "x"}),
            "lacks private_key",
        ),
        (
            lambda tmp: write_key(
                tmp, {"type": "service_account", "client_email": "a@b", "token_uri": "x", "private_key": BAD_PEM}
            ),
            "private_key in the key file cannot be read",
        ),
    ],
)
def test_unusable_key_file_is_a_one_sentence_config_error(tmp_path: Path, make, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GoogleSheetSource.from_settings(Settings(google_credentials_file=make(tmp_path)), env={})
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and "c2VjcmV0" not in message and "PRIVATE KEY" not in message


def test_options_from_env() -> None:
    options = GoogleOptions.from_env(
        {
            "TUTTLE_GOOGLE_TIMEOUT": "5",
            "TUTTLE_GOOGLE_ATTEMPTS": "2",
            "TUTTLE_GOOGLE_CONCURRENCY": "4",
            "TUTTLE_GOOGLE_REQUESTS_PER_MINUTE": "30",
            "TUTTLE_GOOGLE_API_URL": "http://127.0.0.1:9/",
        }
    )
    assert (options.read_timeout, options.connect_timeout, options.attempts) == (5.0, 5.0, 2)
    assert (options.concurrency, options.requests_per_minute, options.api_base_url) == (4, 30, "http://127.0.0.1:9")
    assert GoogleOptions.from_env({}) == GoogleOptions()
    for variable, value, expected in [
        ("TUTTLE_GOOGLE_CONCURRENCY", "0", "TUTTLE_GOOGLE_CONCURRENCY must be at least 1, got 0"),
        ("TUTTLE_GOOGLE_ATTEMPTS", "two", "TUTTLE_GOOGLE_ATTEMPTS must be a whole number, got 'two'"),
        ("TUTTLE_GOOGLE_TIMEOUT", "fast", "TUTTLE_GOOGLE_TIMEOUT must be a number, got 'fast'"),
        ("TUTTLE_GOOGLE_API_URL", "127.0.0.1:9", "TUTTLE_GOOGLE_API_URL must be an http(s) URL"),
    ]:
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            GoogleOptions.from_env({variable: value})


def test_key_never_appears_in_logs_or_messages(fake: FakeGoogle, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fake.add_sheet(key(1), [HEADER, row("TT_S01_E01_FRM-00-00-00-00", "Rare")], fail_first=[429])
    fake.add_sheet(key(2), [HEADER], status=403)
    source = make_source(fake, tmp_path)
    source.read(share_link(key(1)))
    with pytest.raises(SheetError) as caught:
        source.read(share_link(key(2)))
    assert "retrying" in caplog.text  # the retry was logged ...
    secret = json.loads(fake.key_file(tmp_path).read_text())["private_key"]
    body = "".join(secret.splitlines()[1:-1])
    for text in (caplog.text, str(caught.value)):  # ... but nothing of the key
        assert PRIVATE_KEY_ID not in text and "PRIVATE KEY" not in text
        assert not any(chunk in text for chunk in (body[i : i + 24] for i in range(0, len(body) - 24, 24)))


# ------------------------------------------------------------------------------------- end to end
def _use_fake_google(fake: FakeGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_DRIVE_CREDENTIALS_FILE", str(fake.key_file(tmp_path)))
    monkeypatch.setenv("TUTTLE_GOOGLE_API_URL", fake.url)


def test_sync_end_to_end_from_google_sheets(fake: FakeGoogle, bucket, tmp_path: Path, monkeypatch) -> None:
    e1 = [frame_number("S01E01", i) for i in range(4)]
    e2 = [frame_number("S01E02", i) for i in range(3)]
    fake.add_sheet(key(1), [HEADER] + [row(f, "Common", jonny="Rare" if i % 2 else "") for i, f in enumerate(e1)])
    renamed = ["ROW_INDEX", " Frame Number ", "unsupervised classification", "JONNY\u2019s RECLASSIFICATION"]
    body = [[str(i), f, "Trash", "Legendary" if i == 0 else ""] for i, f in enumerate(e2)]
    fake.add_sheet(key(2), [renamed, *body, [], ["", " "], [""] * 4])  # blank rows at the end
    put_sources(bucket, e1 + e2)
    put_manifest(bucket, "S01", [manifest_entry("S01E01", share_link(key(1))), manifest_entry("S01E02", key(2))])
    _use_fake_google(fake, tmp_path, monkeypatch)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    rarities = {frame: rarity for frame, (_, rarity) in dataset_keys(bucket).items()}
    assert rarities == {
        e1[0]: "Common", e1[1]: "Rare", e1[2]: "Common", e1[3]: "Rare",
        e2[0]: "Legendary", e2[1]: "Trash", e2[2]: "Trash",
    }  # fmt: skip
    assert len(fake.claims) == 1 and len(fake.api_hits()) == 4


def test_sync_skips_only_the_episodes_it_cannot_read(
    fake: FakeGoogle, bucket, tmp_path: Path, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO)
    e1 = [frame_number("S01E01", i) for i in range(3)]
    fake.add_sheet(key(1), [HEADER] + [row(f, "Uncommon") for f in e1])
    fake.add_sheet(key(3), [HEADER], status=403)
    fake.add_sheet(key(5), [["FRAME_NO", "JONNY's RECLASSIFICATION"], ["TT_S01_E05_FRM-00-00-00-00", "Rare"]])
    put_sources(bucket, e1)
    entries = [manifest_entry("S01E01", share_link(key(1)))]
    entries += [manifest_entry(f"S01E0{n}", share_link(key(n))) for n in (3, 4, 5)]  # 403, 404, bad header
    put_manifest(bucket, "S01", entries)
    _use_fake_google(fake, tmp_path, monkeypatch)

    result = run_cli("sync")

    assert result.exit_code == 1  # two sheets cannot be opened: job failures; a bad header is a data finding
    assert {frame: rarity for frame, (_, rarity) in dataset_keys(bucket).items()} == dict.fromkeys(e1, "Uncommon")
    assert "job failures: 2" in result.stdout and "data findings: 1 (1 sheet skipped)" in result.stdout
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    e3 = next(m for m in errors if m.startswith("S01E03: "))
    assert "'Tuttle Twins S01E03 test sheet'" in e3 and share_link(key(3)) in e3 and SERVICE_ACCOUNT_EMAIL in e3
    e4 = next(m for m in errors if m.startswith("S01E04: "))
    assert "not found (404)" in e4 and SERVICE_ACCOUNT_EMAIL in e4
    assert not any(m.startswith("S01E05: ") for m in errors)
    e5 = next(m for m in warnings if m.startswith("S01E05: "))
    assert "FRAME NUMBER" in e5
    assert PRIVATE_KEY_ID not in result.output + caplog.text and "PRIVATE KEY" not in result.output + caplog.text


def test_sync_with_an_unusable_key_file_exits_2(bucket, tmp_path: Path, monkeypatch) -> None:
    put_manifest(bucket, "S01", [manifest_entry("S01E01", share_link(key(1)))])
    monkeypatch.setenv("GOOGLE_DRIVE_CREDENTIALS_FILE", str(tmp_path / "nowhere.json"))
    result = run_cli("sync")
    assert result.exit_code == 2
    assert "GOOGLE_DRIVE_CREDENTIALS_FILE" in result.output and "no such file" in result.output
    assert "Traceback" not in result.output
