"""``python -m tests.aipower_site``: serve the local site until Ctrl-C, to reproduce any
fault by hand with the real ``llm`` command.

    python -m tests.aipower_site --release 2.4.71 --port 8088 --fault quota
    llm -m chatgptfree -o site http://127.0.0.1:8088/chat/ "Hi"

``--providers`` serves chatgptfree.ai's setup (2.4.71): nine bots, each on its own model
API; ``NAME@BOT`` aims a fault at one bot (id, label, provider or API):
``--fault rate_limited@anthropic``; ``--bot-config 25865:webToggleDefaultOn=true`` changes a
bot's page settings (JSON values).

One ``--fault`` plays on every request it concerns; several play once each, in order
(a request takes the first one that concerns it). ``NAME:TARGET`` overrides the target
(``http_503:stream``). ``--page-fault``s play once each on page GETs, in order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading

from . import RELEASES, AIPowerSite
from .faults import TARGETS, Fault, PageVariant, fault_entry


def fault_argument(text: str) -> Fault | tuple[Fault, str]:
    name, _, target = text.partition(":")
    name, at, bot = name.partition("@")
    try:
        fault = Fault(name)
    except ValueError:
        raise argparse.ArgumentTypeError(f"no fault {name!r} (see --list-faults)") from None
    if target and target.partition("@")[0] not in TARGETS:
        raise argparse.ArgumentTypeError(f"no target {target!r}: one of {', '.join(TARGETS)}")
    if at:
        return fault_entry((fault, f"{target}@{bot}"))
    return fault_entry((fault, target)) if target else fault


def bot_setting(text: str) -> tuple[int, str, object]:
    """``BOT:KEY=JSON`` → (bot id, key, value)."""
    bot, _, setting = text.partition(":")
    key, equals, value = setting.partition("=")
    try:
        if not (equals and key):
            raise ValueError
        return int(bot), key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not BOT:KEY=JSON") from None


def list_faults() -> str:
    width = max(len(fault.value) for fault in Fault)
    lines = [f"{'fault':{width}}  target  plays on  what it does"]
    for fault in Fault:
        generations = "/".join(fault.generations)
        lines.append(f"{fault.value:{width}}  {fault.target:6}  {generations:8}  {fault.help}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.aipower_site",
        description="A local WordPress site running the AI Power chat box.",
        epilog="One --fault plays on every request it concerns; several play once each.",
    )
    parser.add_argument("--release", default="1.8.96", choices=RELEASES)
    parser.add_argument("--port", type=int, default=8088, help="0: any free port")
    parser.add_argument("--tls", action="store_true", help="HTTPS with a throw-away CA")
    parser.add_argument(
        "--providers", action="store_true", help="chatgptfree.ai: nine bots on six model APIs"
    )
    parser.add_argument("--variant", default="normal", choices=[v.value for v in PageVariant])
    parser.add_argument("--fault", nargs="+", action="extend", type=fault_argument, default=[])
    parser.add_argument("--page-fault", nargs="+", action="extend", type=fault_argument, default=[])
    parser.add_argument(
        "--bot-config", nargs="+", action="extend", type=bot_setting, default=[],
        metavar="BOT:KEY=JSON", help="--providers: a bot's data-config setting",
    )  # fmt: skip
    parser.add_argument("--list-faults", action="store_true", help="list the faults and exit")
    arguments = parser.parse_args(argv)
    if arguments.list_faults:
        print(list_faults())
        return
    if arguments.bot_config and not arguments.providers:
        parser.error("--bot-config is for the --providers setup")
    if arguments.providers and arguments.release != "2.4.71":
        parser.error("--providers is the 2.4.71 setup of chatgptfree.ai (--release 2.4.71)")
    site = AIPowerSite(
        arguments.release, port=arguments.port, tls=arguments.tls, providers=arguments.providers
    )
    try:
        site.page_variant = arguments.variant
    except ValueError as error:
        parser.error(str(error))
    if len(arguments.fault) == 1:
        site.fault = arguments.fault[0]
    else:
        site.faults = arguments.fault
    site.page_faults = arguments.page_fault
    for bot_id, key, value in arguments.bot_config:
        if bot_id not in site.bots:
            parser.error(f"no bot {bot_id}: one of {', '.join(map(str, site.bots))}")
        site.configure_bot(bot_id, **{key: value})
    with site:
        print(
            f"AI Power {site.release} ({site.generation}) at {site.home_url}\n"
            f"  chat page: {site.chat_url}\n"
            + ("" if site.providers else f"  bot page:  {site.bot_url}\n")
            + f"  admin-ajax: {site.ajax_url}",
            flush=True,
        )
        for bot_id, bot in site.bots.items() if site.providers else ():
            print(f"  bot {bot_id}: {bot.label} ({bot.provider}, {bot.api} API)", flush=True)
        if site.ca_path:
            print(f"  CA certificate: {site.ca_path}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop cleanly on kill too
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
