"""Specification of the htpasswd-compatible bcrypt PasswordStore."""

from __future__ import annotations

import os
import shutil
import stat
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from flight_secure.auth.passwords import PasswordFileError, PasswordStore

ROUNDS = 4  # cheapest bcrypt cost: keeps the functional tests fast

needs_htpasswd = pytest.mark.skipif(
    shutil.which("htpasswd") is None, reason="htpasswd (apache2-utils) is not installed"
)


@pytest.fixture
def store() -> PasswordStore:
    s = PasswordStore(rounds=ROUNDS)
    s.add("alice", "correct horse")
    s.add("bob", "battery staple")
    return s


def test_correct_password_verifies(store: PasswordStore) -> None:
    assert store.verify("alice", "correct horse")


def test_wrong_password_is_rejected(store: PasswordStore) -> None:
    assert not store.verify("alice", "battery staple")


def test_unknown_user_is_rejected(store: PasswordStore) -> None:
    assert not store.verify("mallory", "correct horse")


def test_password_over_72_bytes_never_verifies(store: PasswordStore) -> None:
    assert not store.verify("alice", "correct horse" + "x" * 80)


def test_add_replaces_existing_password(store: PasswordStore) -> None:
    store.add("alice", "new password")
    assert store.verify("alice", "new password")
    assert not store.verify("alice", "correct horse")
    assert len(store) == 2


def test_save_then_load_round_trips(store: PasswordStore, tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    store.save(path)
    loaded = PasswordStore.load(path, rounds=ROUNDS)
    assert loaded.users() == ["alice", "bob"]
    assert loaded.verify("alice", "correct horse")
    assert loaded.verify("bob", "battery staple")
    assert not loaded.verify("bob", "correct horse")


def test_saved_file_uses_htpasswd_bcrypt_lines(store: PasswordStore, tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    store.save(path)
    lines = path.read_text().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["alice", "bob"]
    assert all(line.split(":", 1)[1].startswith("$2y$04$") for line in lines)


def test_saved_file_has_mode_0600(store: PasswordStore, tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    store.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_over_world_readable_file_leaves_mode_0600(
    store: PasswordStore, tmp_path: Path
) -> None:
    path = tmp_path / "htpasswd"
    path.write_text("")
    path.chmod(0o644)
    store.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_leaves_no_temporary_files(store: PasswordStore, tmp_path: Path) -> None:
    store.save(tmp_path / "htpasswd")
    store.save(tmp_path / "htpasswd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["htpasswd"]


def test_load_ignores_blank_lines_and_comments(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(ROUNDS)).decode()
    path = tmp_path / "htpasswd"
    path.write_text(f"# managed by ops\n\n   \n{'carol'}:{hashed}\n  # trailing comment\n")
    assert PasswordStore.load(path).users() == ["carol"]


@pytest.mark.parametrize("prefix", ["$2y$", "$2b$", "$2a$"])
def test_load_accepts_every_bcrypt_prefix(tmp_path: Path, prefix: str) -> None:
    hashed = prefix + bcrypt.hashpw(b"pw", bcrypt.gensalt(ROUNDS)).decode()[4:]
    path = tmp_path / "htpasswd"
    path.write_text(f"dave:{hashed}\n")
    assert PasswordStore.load(path).verify("dave", "pw")


@pytest.mark.parametrize(
    "hashed",
    [
        "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/",
        "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        "rqXexS6ZhobKA",
        "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/"
        "jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
        "hunter2-plaintext",
    ],
)
def test_load_refuses_non_bcrypt_line_naming_line_and_user(tmp_path: Path, hashed: str) -> None:
    good = bcrypt.hashpw(b"pw", bcrypt.gensalt(ROUNDS)).decode()
    path = tmp_path / "htpasswd"
    path.write_text(f"# header\nalice:{good}\nerin:{hashed}\n")
    with pytest.raises(PasswordFileError) as caught:
        PasswordStore.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "line 3" in message
    assert "'erin'" in message
    assert "htpasswd -B" in message
    assert hashed not in message
    assert isinstance(caught.value, ValueError)


def test_load_refuses_line_without_separator(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text("justsomesecretvalue\n")
    with pytest.raises(PasswordFileError, match="line 1") as caught:
        PasswordStore.load(path)
    assert "justsomesecretvalue" not in str(caught.value)


def test_load_refuses_duplicate_user(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(ROUNDS)).decode()
    path = tmp_path / "htpasswd"
    path.write_text(f"frank:{hashed}\nfrank:{hashed}\n")
    with pytest.raises(PasswordFileError, match=r"line 2: user 'frank' already defined on line 1"):
        PasswordStore.load(path)


@pytest.mark.parametrize(
    "user",
    ["", "a:b", "line\nbreak", "cr\rhere", "x" * 256, " padded", "#comment", "nul\x00"],
)
def test_add_refuses_user_names_htpasswd_cannot_hold(user: str) -> None:
    with pytest.raises(ValueError, match="user name"):
        PasswordStore(rounds=ROUNDS).add(user, "pw")


def test_add_accepts_user_name_of_255_characters() -> None:
    s = PasswordStore(rounds=ROUNDS)
    s.add("u" * 255, "pw")
    assert "u" * 255 in s


def test_add_refuses_empty_password() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        PasswordStore(rounds=ROUNDS).add("alice", "")


def test_add_refuses_password_over_72_utf8_bytes_without_echoing_it() -> None:
    password = "é" * 37  # 74 bytes in UTF-8, only 37 characters
    with pytest.raises(ValueError, match="at most 72 bytes") as caught:
        PasswordStore(rounds=ROUNDS).add("alice", password)
    assert password not in str(caught.value)
    assert "é" not in str(caught.value)


def test_add_accepts_password_of_exactly_72_bytes() -> None:
    s = PasswordStore(rounds=ROUNDS)
    s.add("alice", "é" * 36)
    assert s.verify("alice", "é" * 36)


def test_remove_deletes_user(store: PasswordStore) -> None:
    store.remove("bob")
    assert "bob" not in store
    assert not store.verify("bob", "battery staple")


def test_remove_unknown_user_raises_key_error(store: PasswordStore) -> None:
    with pytest.raises(KeyError, match="no such user"):
        store.remove("mallory")


def test_repr_shows_count_but_no_hashes(store: PasswordStore) -> None:
    text = repr(store)
    assert "users=2" in text
    assert "$2" not in text
    assert "correct horse" not in text


def test_reload_picks_up_changed_file(store: PasswordStore, tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    store.save(path)
    live = PasswordStore.load(path, rounds=ROUNDS)
    assert not live.reload()
    store.add("carol", "pw3")
    store.save(path)
    assert live.reload()
    assert live.verify("carol", "pw3")


def test_reload_with_invalid_file_keeps_current_users(
    store: PasswordStore, tmp_path: Path
) -> None:
    path = tmp_path / "htpasswd"
    store.save(path)
    live = PasswordStore.load(path, rounds=ROUNDS)
    path.write_text("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    with pytest.raises(PasswordFileError):
        live.reload()
    assert live.verify("alice", "correct horse")


def test_reload_of_store_not_loaded_from_file_is_a_no_op(store: PasswordStore) -> None:
    assert store.reload() is False


# ------------------------------------------------------------ htpasswd interop


@needs_htpasswd
def test_store_verifies_password_written_by_htpasswd(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    subprocess.run(
        ["htpasswd", "-c", "-B", "-b", "-C", "5", str(path), "grace", "s3cret pass"],
        check=True,
        capture_output=True,
    )
    loaded = PasswordStore.load(path)
    assert loaded.verify("grace", "s3cret pass")
    assert not loaded.verify("grace", "s3cret passX")


@needs_htpasswd
def test_htpasswd_verifies_password_written_by_store(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    s = PasswordStore(rounds=5)
    s.add("heidi", "open sesame")
    s.save(path)
    ok = subprocess.run(
        ["htpasswd", "-v", "-b", str(path), "heidi", "open sesame"], capture_output=True
    )
    bad = subprocess.run(
        ["htpasswd", "-v", "-b", str(path), "heidi", "open sesamE"], capture_output=True
    )
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode != 0


@needs_htpasswd
def test_htpasswd_can_add_users_to_a_file_the_store_wrote(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    s = PasswordStore(rounds=5)
    s.add("ivan", "first")
    s.save(path)
    subprocess.run(
        ["htpasswd", "-B", "-b", "-C", "5", str(path), "judy", "second"],
        check=True,
        capture_output=True,
    )
    loaded = PasswordStore.load(path)
    assert loaded.verify("ivan", "first")
    assert loaded.verify("judy", "second")


# ------------------------------------------------------------------- timing


def _cpu_seconds(call: Callable[[], object]) -> float:
    """The CPU time ``call`` takes on this thread (bcrypt runs on the calling thread):
    unlike wall time, it does not grow while other processes hold the cores."""
    start = time.thread_time()
    call()
    return time.thread_time() - start


def _enumeration_ratio(s: PasswordStore, known: str) -> float:
    """Median CPU time of an unknown user's check over a known user's wrong password,
    measured in interleaved pairs whose order alternates (ABBA)."""
    s.verify("nobody", "warm up the dummy hash")
    checks = {"unknown": lambda: s.verify("nobody", "guess"),
              "wrong": lambda: s.verify(known, "guess")}
    times: dict[str, list[float]] = {"unknown": [], "wrong": []}
    for pair in range(10):
        for kind in (("unknown", "wrong") if pair % 2 == 0 else ("wrong", "unknown")):
            times[kind].append(_cpu_seconds(checks[kind]))
    return statistics.median(times["unknown"]) / statistics.median(times["wrong"])


def test_unknown_user_takes_as_long_as_wrong_password() -> None:
    s = PasswordStore(rounds=8)
    s.add("karl", "right")
    assert 0.5 <= _enumeration_ratio(s, "karl") <= 2.0


def test_unknown_user_timing_follows_cost_of_loaded_hashes(tmp_path: Path) -> None:
    # File hashes at cost 8 while the store's own default cost is 12: the dummy
    # hash must follow the file, or unknown users would take 16x longer.
    path = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(8)).decode()
    path.write_text(f"karl:{hashed}\n")
    s = PasswordStore.load(path, rounds=12)
    assert 0.5 <= _enumeration_ratio(s, "karl") <= 2.0


def test_password_file_is_never_created_world_readable(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        s = PasswordStore(rounds=ROUNDS)
        s.add("alice", "pw")
        s.save(tmp_path / "htpasswd")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "htpasswd").stat().st_mode) == 0o600
