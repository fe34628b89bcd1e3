"""What a demanding user still trips on (issue 17, items 4, 5, 9, 10, 11, 12, 13 and 17),
and the one helper for the plugin's JSON files (issue 14, item 5).

Everything runs through the real ``llm`` command line (click's CliRunner) against the
local AI Power site on 127.0.0.1; nothing reaches the internet. Ownership and read-only
folders are simulated where root would see through them, so no test is skipped as root.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from tests.aipower_site import AIPowerSite
from tests.aipower_site.hostile import page_reply
from tests.aipower_site.v2 import Bot
from tests.conftest import run

ANSWER = "Hello from the fake upstream. You said: "
ESC = "\x1b"


def folder(user_dir: Path) -> Path:
    return user_dir / "chatgptfree"


def error_line(output: str, *parts: str) -> str:
    """The one ``Error:`` line of ``output``, holding every one of ``parts``."""
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    assert all(part in lines[0] for part in parts), output
    return lines[0]


# -- item 4: model ids are unique, stable, and never taken over ----------------------------


def clashing_site(order: list[int]) -> AIPowerSite:
    site = AIPowerSite("2.4.71")
    labels = {5: "Claude 2", 7: "Claude", 2: "Claude"}
    site.page_variant = "several"  # one box per bot of ``site.bots``, in its order
    site.bots = {bot_id: Bot(labels[bot_id]) for bot_id in order}
    return site


def bot_models(output: str) -> dict[str, str]:
    """model id -> bot id, from the lines ``  chatgptfree/…: Label via …, bot N``."""
    found = {}
    for line in output.splitlines():
        if line.startswith("  chatgptfree/"):
            model, _, rest = line.strip().partition(": ")
            found[model] = rest.rpartition("bot ")[2]
    return found


def test_bots_with_clashing_labels_get_unique_ids_stable_across_refreshes():
    with clashing_site([5, 7, 2]) as site:
        added = run("chatgptfree", "sites", "add", "local", site.chat_url)
        assert added.exit_code == 0, added.output
        first = bot_models(added.output)
        assert first == {
            "chatgptfree/local/claude-2": "5",
            "chatgptfree/local/claude": "2",
            "chatgptfree/local/claude-7": "7",
        }
        for model, bot_id in first.items():  # every bot can be reached
            result = run("-m", model, "Hi")
            assert result.exit_code == 0, result.output
            asked = [r.fields["bot_id"] for r in site.requests if "bot_id" in r.fields]
            assert asked[-1] == bot_id
        site.bots = {bot_id: site.bots[bot_id] for bot_id in (2, 7, 5)}  # the page reorders
        again = run("chatgptfree", "refresh", "local")
        assert again.exit_code == 0, again.output
        assert bot_models(again.output) == first


def test_sites_add_refuses_bot_slugs_aliases_and_reserved_words(plain_site2):
    site2 = plain_site2
    for name, why in [
        ("claude", "chatgptfree/claude is already the model of chatgptfree.ai's bot 25875"),
        ("grok", "chatgptfree/grok is already the model of chatgptfree.ai's bot 25872 (Grok)"),
        ("gpt-4o-mini", "'gpt-4o-mini' is a reserved word"),
        ("chatgptfree", "'chatgptfree' is a reserved word"),
        ("gpt-4o-mini-2024-07-18", "is a reserved word"),
    ]:
        result = run("chatgptfree", "sites", "add", name, site2.chat_url)
        assert result.exit_code == 2, result.output
        assert why in result.output, result.output
        assert "Saved" not in result.output
    assert not (folder(Path(os.environ["LLM_USER_PATH"])) / "sites.json").exists()
    assert "chatgptfree/claude (Claude, bot 25875 of chatgptfree.ai)" in run("models").output


def test_a_saved_site_named_chatgptfree_is_refreshed_by_name(user_dir, monkeypatch):
    with AIPowerSite("2.4.71") as default, AIPowerSite("2.4.71") as saved:
        monkeypatch.setenv("CHATGPTFREE_SITE", default.chat_url)
        folder(user_dir).mkdir(mode=0o700)
        sites = {"format": 1, "sites": {"chatgptfree": {"url": saved.chat_url}}}
        (folder(user_dir) / "sites.json").write_text(json.dumps(sites))
        result = run("chatgptfree", "refresh", "chatgptfree")
        assert result.exit_code == 0, result.output
        assert (default.page_gets, saved.page_gets) == (1, 1), result.output
        assert "chatgptfree/chatgptfree/customer-support" in result.output
        result = run("chatgptfree", "refresh")
        assert (default.page_gets, saved.page_gets) == (2, 2), result.output


# -- item 5: the folder and its files are yours alone ------------------------------------


def test_the_folder_and_its_files_are_private_under_any_umask(plain_site, user_dir):
    site = plain_site
    old = os.umask(0)
    try:
        assert run("chatgptfree", "cookies", "set", "127.0.0.1", "a=1").exit_code == 0
        assert run("chatgptfree", "sites", "add", "local", site.chat_url).exit_code == 0
        assert run("-m", "chatgptfree/local", "Hi").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder(user_dir).stat().st_mode) == 0o700
    files = sorted(folder(user_dir).iterdir())
    assert {p.name for p in files} >= {"cookies.json", "sites.json", "pages.json"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def planted_bots(user_dir: Path, other: AIPowerSite, mode: int) -> Path:
    """A ``bots.json`` that sends the default site's "evil" bot to ``other``."""
    folder(user_dir).mkdir(mode=0o700, exist_ok=True)
    path = folder(user_dir) / "bots.json"
    entry = {"bots": [{"id": "4", "label": "Evil", "page": other.chat_url}]}
    path.write_text(json.dumps({"format": 1, "sites": {"https://chatgptfree.ai/": entry}}))
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o666, 0o620])
def test_a_state_file_others_can_write_is_refused_never_followed(user_dir, mode):
    with AIPowerSite("2.4.71") as other:
        path = planted_bots(user_dir, other, mode)
        result = run("-m", "chatgptfree/evil", "my secret prompt")
        assert result.exit_code == 1
        assert f"{path} can be changed by other users (mode {mode:o}): not read" in result.output
        assert other.requests == []
        sites = folder(user_dir) / "sites.json"
        sites.write_text(json.dumps({"format": 1, "sites": {"x": {"url": other.chat_url}}}))
        sites.chmod(0o646)
        listed = run("chatgptfree", "sites", "list")
        assert listed.exit_code == 1
        error_line(listed.output, str(sites), "can be changed by other users")


def test_a_state_file_of_another_user_is_refused(user_dir, monkeypatch):
    with AIPowerSite("2.4.71") as other:
        path = planted_bots(user_dir, other, 0o600)
        monkeypatch.setattr(os, "geteuid", lambda: os.stat(path).st_uid + 4242)
        result = run("-m", "chatgptfree/evil", "my secret prompt")
        assert result.exit_code == 1
        assert f"{path} belongs to another user (uid {os.stat(path).st_uid})" in result.output
        assert other.requests == []


def test_a_symlinked_state_file_is_not_followed(user_dir, tmp_path):
    elsewhere = tmp_path / "theirs.json"
    elsewhere.write_text(json.dumps({"format": 1, "sites": {}}))
    folder(user_dir).mkdir(mode=0o700)
    (folder(user_dir) / "sites.json").symlink_to(elsewhere)
    result = run("chatgptfree", "sites", "list")
    assert result.exit_code == 1
    error_line(result.output, "sites.json is a symbolic link: not followed")


# -- item 9: a folder that cannot be written is one Error line ---------------------------


def write_commands(site: AIPowerSite) -> dict[str, list[str]]:
    return {
        "sites add": ["chatgptfree", "sites", "add", "local", site.chat_url],
        "cookies set": ["chatgptfree", "cookies", "set", "127.0.0.1", "a=1"],
    }


def test_a_symlinked_lock_file_is_one_error_line(plain_site, user_dir, tmp_path):
    site = plain_site
    folder(user_dir).mkdir(mode=0o700)
    for name, args in write_commands(site).items():
        stored = name.split()[0] + ".json"
        lock = folder(user_dir) / f".{stored}.lock"
        lock.symlink_to(tmp_path / "missing" / "victim")
        result = run(*args)
        assert result.exit_code == 1, result.output
        error_line(result.output, str(lock), "symbolic link")
        assert not (folder(user_dir) / stored).exists()


def test_a_plain_file_instead_of_the_folder_is_one_error_line(plain_site, user_dir):
    site = plain_site
    folder(user_dir).write_text("not a folder")
    commands = write_commands(site) | {"refresh": ["chatgptfree", "refresh", "local"]}
    commands["refresh"] = ["chatgptfree", "refresh", site.chat_url]
    for args in commands.values():
        result = run(*args)
        assert result.exit_code == 1, result.output
        error_line(result.output, f"{folder(user_dir)} is not a folder")
    assert run("models").exit_code == 0


def test_a_full_disk_during_refresh_is_one_error_line(plain_site2, user_dir, monkeypatch):
    site2 = plain_site2

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    result = run("chatgptfree", "refresh", site2.chat_url)
    assert result.exit_code == 1
    error_line(result.output, "Cannot write", "bots.json: No space left on device")
    assert "bots" not in result.output.replace("bots.json", "")  # no change reported


def read_only(user_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin's folder made read-only; for root (whom chmod does not stop), creating a
    file in it fails as it would for anyone else."""
    folder(user_dir).chmod(0o500)
    if os.geteuid() == 0:
        real_mkstemp, real_open = tempfile.mkstemp, os.open

        def refused(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        def no_new_files(path, flags, *args, **kwargs):
            inside = Path(path).parent == folder(user_dir)
            if flags & os.O_CREAT and inside and not Path(path).exists():
                refused()
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refused)
        monkeypatch.setattr(os, "open", no_new_files)
        assert real_mkstemp and real_open


def test_a_read_only_folder_is_one_error_line_and_no_false_report(
    plain_site, user_dir, monkeypatch
):
    site = plain_site
    assert run("chatgptfree", "sites", "add", "old", site.chat_url).exit_code == 0
    for page in (site.chat_url, site.bot_url, site.home_url + "?x=1"):
        assert run("-m", "chatgptfree", "-o", "site", page, "Hi").exit_code == 0
    pages = folder(user_dir) / "pages.json"
    before = pages.read_text()
    assert len(json.loads(before)["sites"]) == 3
    read_only(user_dir, monkeypatch)
    try:
        for args, name in [
            (["chatgptfree", "sites", "add", "local", site.chat_url], "sites.json"),
            (["chatgptfree", "sites", "remove", "old"], "sites.json"),
            (["chatgptfree", "cookies", "set", "127.0.0.1", "a=1"], "cookies.json"),
            (["chatgptfree", "refresh", "old"], "bots.json"),
            (["chatgptfree", "cache", "clear"], "pages.json"),
        ]:
            result = run(*args)
            assert result.exit_code == 1, (args, result.output)
            error_line(result.output, name, "Permission denied")
            for claim in ("Saved", "Removed", "Forgot", " bot"):
                assert claim not in result.output, (args, result.output)
    finally:
        folder(user_dir).chmod(0o700)
    assert pages.read_text() == before
    assert "chatgptfree/old" in run("chatgptfree", "sites", "list").output


# -- item 10: an international host name, typed in Unicode ------------------------------


class PunycodeSite(AIPowerSite):
    """The site as ``bücher.example``: its pages name it in punycode, as WordPress does."""

    @property
    def base_url(self) -> str:
        return f"http://xn--bcher-kva.example:{self.port}"


@pytest.mark.parametrize("release", ["1.8.96", "2.4.71"])
def test_a_site_typed_in_unicode_is_its_own_site(release, monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host in ("xn--bcher-kva.example", "bücher.example"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with PunycodeSite(release) as site:
        for spelling in ("bücher.example", "xn--bcher-kva.example"):
            url = f"http://{spelling}:{site.port}/chat/"
            result = run("-m", "chatgptfree", "-o", "site", url, "Hi")
            assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n"), result.output
            assert run("chatgptfree", "cache", "clear").exit_code == 0


# -- item 11: 1.x in a WordPress subfolder -----------------------------------------------


class SubfolderSite(AIPowerSite):
    """A 1.x site in ``/blog/`` whose ``wpaicgParams.ajax_url`` is relative (or
    protocol-relative); nothing answers at the root."""

    def __init__(self, ajax_url: str) -> None:
        super().__init__("1.8.96")
        self.relative_ajax_url = ajax_url
        self.paths: list[str] = []

    def _route(self, request, handler):
        self.paths.append(request.path)
        if not request.path.startswith("/blog/"):
            return page_reply(404, b"<title>Not Found</title>")
        inner = dataclasses.replace(request, path=request.path.removeprefix("/blog"))
        reply = super()._route(inner, handler)
        if inner.path.endswith("admin-ajax.php"):
            return reply
        absolute = f"http:\\/\\/127.0.0.1:{self.port}\\/wp-admin\\/admin-ajax.php"
        ajax = self.relative_ajax_url.format(port=self.port).replace("/", "\\/")
        assert absolute.encode() in reply.body
        return page_reply(reply.status, reply.body.replace(absolute.encode(), ajax.encode()))


@pytest.mark.parametrize(
    "ajax_url", ["/blog/wp-admin/admin-ajax.php", "//127.0.0.1:{port}/blog/wp-admin/admin-ajax.php"]
)
def test_1x_in_a_subfolder_posts_where_the_page_says(ajax_url):
    with SubfolderSite(ajax_url) as site:
        result = run("-m", "chatgptfree", "-o", "site", site.base_url + "/blog/chat/", "Hi")
        assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
        assert "/wp-admin/admin-ajax.php" not in site.paths
        assert "/blog/wp-admin/admin-ajax.php" in site.paths


# -- item 12: a whole Cookie header, or a clear refusal ------------------------------------


def long_header() -> str:
    pairs = [f"c{n:02d}=" + "v" * 85 for n in range(54)]
    header = "; ".join(pairs) + "; cf_clearance=" + "k" * 200
    assert len(header) == 5127
    return header


def test_a_long_cookie_header_comes_whole_from_stdin(user_dir):
    result = run("chatgptfree", "cookies", "set", "127.0.0.1", "-", input=long_header() + "\n")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Saved 55 cookies for 127.0.0.1: c00, ")
    saved = json.loads((folder(user_dir) / "cookies.json").read_text())["hosts"]["127.0.0.1"]
    assert saved["cf_clearance"] == "k" * 200 and len(saved) == 55


def test_a_header_cut_at_a_terminal_line_is_refused(user_dir):
    cut = long_header()[:4095]
    result = run("chatgptfree", "cookies", "set", "127.0.0.1", input=cut + "\n")
    assert result.exit_code == 1
    error_line(result.output, "probably cut", "nothing was saved", "cookies set 127.0.0.1 -")
    assert "Saved" not in result.output
    assert not (folder(user_dir) / "cookies.json").exists()


# -- item 13: a hostile site's escape sequences never reach the terminal -----------------

HOSTILE = f"{ESC}]0;pwned{chr(7)}Evil{ESC}[2J{ESC}]8;;http://evil.example/{chr(7)} bot\x9b31m"


def test_escape_sequences_in_bot_labels_are_never_printed_nor_stored(user_dir):
    with AIPowerSite("2.4.71") as site:
        site.page_variant = "several"
        site.bots = {4: Bot(HOSTILE, provider=f"Open{ESC}[5mAI")}
        outputs = [run("chatgptfree", "sites", "add", "local", site.chat_url).output]
        outputs.append(run("chatgptfree", "refresh", "local").output)
        outputs.append(run("models").output)
        outputs.append(run("chatgptfree", "sites", "list").output)
        outputs.append(run("chatgptfree", "probe", site.chat_url).output)
        for output in outputs:
            assert "Evil" in output, output
            assert not any(c in output for c in (ESC, "\x07", "\x9b")), repr(output)
        assert ESC not in (folder(user_dir) / "bots.json").read_text(encoding="utf-8")
        assert "\\u001b" not in (folder(user_dir) / "bots.json").read_text()


def test_escape_sequences_kept_in_an_old_bots_file_are_not_replayed(user_dir):
    folder(user_dir).mkdir(mode=0o700)
    bots = {"bots": [{"id": "4", "label": HOSTILE, "provider": f"{ESC}[2J"}]}
    path = folder(user_dir) / "bots.json"
    path.write_text(json.dumps({"format": 1, "sites": {"https://chatgptfree.ai/": bots}}))
    path.chmod(0o600)
    output = run("models").output
    assert "Evil bot 31m, bot 4 of chatgptfree.ai" in output, output
    assert ESC not in output and "\x07" not in output


def test_escape_sequences_in_a_site_error_are_never_printed(tmp_path):
    capture = tmp_path / "error.response.http"
    message = f"{ESC}]8;;http://evil.example/{chr(7)}click here{ESC}]8;;{chr(7)}{ESC}[2J now"
    body = json.dumps({"status": "error", "msg": message})
    capture.write_text(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{body}")
    with AIPowerSite("1.8.96") as site:
        site.replay_next(capture)
        result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    assert result.exit_code == 1
    line = error_line(result.output, "says: click here now")
    assert ESC not in result.output and "\x07" not in line


# -- item 17: the smaller ones -------------------------------------------------------------


def test_probe_says_how_many_bots_it_does_not_show():
    with AIPowerSite("2.4.71") as site:
        site.page_variant = "several"
        site.bots = {n: Bot(f"Bot number {n}") for n in range(1, 54)}
        result = run("chatgptfree", "probe", site.chat_url)
    assert result.exit_code == 0, result.output
    assert sum(line.startswith("Bot ") for line in result.output.splitlines()) == 20
    more = "\nMore     33 more bots not shown (53 in all); check one with --bot ID\n"
    assert more in result.output


def test_a_key_is_said_to_be_unused(plain_site):
    site = plain_site
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "--key", "sk-abc", "Hi")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "llm-chatgptfree: the key given (--key or key=) is not used: these models need none "
        "(cookies go in 'llm chatgptfree cookies set HOST').",
        ANSWER + "Hi",
    ]
    assert "key" not in run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi").output


class NotModifiedSite(AIPowerSite):
    def _route(self, request, handler):
        if not request.path.endswith("admin-ajax.php"):
            return dataclasses.replace(page_reply(304, b""), reason="Not Modified")
        return super()._route(request, handler)


def test_a_304_page_is_not_called_a_redirect():
    with NotModifiedSite("2.4.71") as site:
        result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    assert result.exit_code == 1
    line = error_line(result.output, "HTTP 304 Not Modified", "a cache in front of the site")
    assert "redirect" not in line


def test_page_errors_never_show_the_cache_busting_url():
    with AIPowerSite("2.4.71") as site:
        url = site.chat_url
    result = run("chatgptfree", "refresh", url)  # the site is gone
    assert result.exit_code == 1
    assert f"Could not reach {url}:" in result.output, result.output
    assert "nocache" not in result.output
    probe = run("chatgptfree", "probe", url)
    assert "nocache" not in probe.output and url in probe.output


def test_a_prompt_that_is_not_utf8_is_blamed_on_the_prompt(plain_site):
    site = plain_site
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "caf\udcff")
    assert result.exit_code == 1
    error_line(result.output, "The prompt holds a byte that is not UTF-8 (0xFF, at character 4)")
    assert "bug" not in result.output and site.ajax_posts == 0
