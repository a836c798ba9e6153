"""``posture-connector lab``: arguments and the command.

`connector.cli` imports this module only when the command runs, so the service never needs the
``[lab]`` extra; it hands over the arguments after ``lab`` to `main`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from posture_lab._certs import summarize
from posture_lab._lab import PROVISIONER, SAMPLE_DEVICES, Lab, LabOptions
from posture_lab._tools import (
    DEFAULT_TEMPLATE,
    TEMPLATES_DIR,
    LabError,
    find_step_tools,
    packaged_templates,
)
from posture_lab.devicesim import AcmeError, SimulatedDevice


def template_file(value: str) -> Path:
    """`--template`: a file, else the name of a packaged template (`device-only.tpl`)."""
    given = Path(value)
    if given.is_file():
        return given
    packaged = TEMPLATES_DIR / given.name
    if given.name == value and packaged.is_file():
        return packaged
    names = ", ".join(packaged_templates())
    raise argparse.ArgumentTypeError(f"no file {value!r} nor a packaged template ({names})")


def add_lab_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``posture-connector lab``."""
    parser.add_argument(
        "--dir",
        type=Path,
        help="working directory for the CA, connector and logs (default: a new temp dir)",
    )
    parser.add_argument(
        "--template",
        type=template_file,
        default=DEFAULT_TEMPLATE,
        help="X.509 template for the provisioner: a file, or the name of a packaged one "
        f"({', '.join(packaged_templates())}); "
        f"default: {DEFAULT_TEMPLATE.name}",
    )
    parser.add_argument(
        "--inventory",
        type=Path,
        help='JSON inventory ({"devices": [...]}, the json provider schema); default: 3 samples',
    )
    parser.add_argument(
        "--policy",
        type=Path,
        help="TOML file with [people] and/or [gate] tables: the webhooks' policy settings",
    )
    parser.add_argument(
        "--serial", action="append", default=[], help="enrol a device with this serial (repeatable)"
    )
    parser.add_argument(
        "--udid", action="append", default=[], help="enrol a device by this UDID (repeatable)"
    )
    parser.add_argument("--step-bin", type=Path, help="directory holding step-ca and step")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep CA and connector running after the enrolments until Ctrl-C",
    )


def _lab_devices(
    args: argparse.Namespace, inventory: Sequence[Mapping[str, Any]]
) -> list[tuple[str, SimulatedDevice, bool]]:
    """(label, device, by_udid) for each requested enrolment; by default the inventory + 1."""
    wanted: list[tuple[str, SimulatedDevice, bool]] = []
    for serial in args.serial:
        wanted.append((serial, SimulatedDevice.generate(serial=serial), False))
    for udid in args.udid:
        wanted.append((udid, SimulatedDevice.generate(udid=udid), True))
    if wanted:
        return wanted
    for item in inventory:
        if item.get("serial"):
            wanted.append(
                (str(item["serial"]), SimulatedDevice.generate(serial=str(item["serial"])), False)
            )
        elif item.get("udid"):
            wanted.append(
                (str(item["udid"]), SimulatedDevice.generate(udid=str(item["udid"])), True)
            )
    unknown = SimulatedDevice.generate()
    wanted.append((f"{unknown.serial} (not in the inventory)", unknown, False))
    return wanted


def main(argv: Sequence[str] | None = None) -> int:
    """``posture-connector lab ARGS``: parse the lab's own options and run it."""
    parser = argparse.ArgumentParser(
        prog="posture-connector lab",
        description="run a local step-ca + connector and enrol simulated Apple devices",
    )
    add_lab_arguments(parser)
    return run_lab(parser.parse_args(argv))


def run_lab(args: argparse.Namespace) -> int:
    """``posture-connector lab``: bring up step-ca + connector, enrol simulated devices, report.

    Exit codes: 0 every enrolment ran (issued or refused), 2 setup failed.
    """
    try:
        tools = find_step_tools(args.step_bin)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    inventory: Sequence[Mapping[str, Any]] = SAMPLE_DEVICES
    options_kwargs: dict[str, Any] = {}
    try:
        if args.inventory:
            document = json.loads(args.inventory.read_text(encoding="utf-8"))
            inventory = document.get("devices", []) if isinstance(document, dict) else document
        if args.policy:
            policy = tomllib.loads(args.policy.read_text(encoding="utf-8"))
            if "people" in policy:
                options_kwargs["enrich_policy"] = policy["people"]
            if "gate" in policy:
                options_kwargs["gate_policy"] = policy["gate"]
    except (OSError, ValueError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        print(f"lab: cannot read input: {exc}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        directory = args.dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="posture-lab-"))
        )
        directory = directory.resolve()
        options = LabOptions(
            directory=directory, template=args.template, inventory=inventory, **options_kwargs
        )
        lab = stack.enter_context(Lab(tools, options))
        print(f"lab: working in {directory}")
        try:
            lab.setup()
            lab.start_connector()
        except LabError as exc:
            print(f"lab: setup failed: {exc}", file=sys.stderr)
            return 2
        print(f"lab: step-ca {lab.ca.url} (root {lab.ca.root})")
        print(f"lab: ACME directory {lab.ca.acme_directory(PROVISIONER)}")
        print(f"lab: connector {lab.connector_url} (config {lab.config_path})")
        print(f"lab: set up in {lab.timings['ca_setup']:.1f}s\n")
        for label, device, by_udid in _lab_devices(args, inventory):
            _print_enrolment(
                lab, label, device, by_udid=by_udid, out=directory if args.dir else None
            )
        if args.keep:
            print("\nlab: running; edit the inventory or enrol with another tool. Ctrl-C stops.")
            with contextlib.suppress(KeyboardInterrupt):
                while lab.ca.running and lab.connector.running:
                    time.sleep(1)
    return 0


def _print_enrolment(
    lab: Lab, label: str, device: SimulatedDevice, *, by_udid: bool, out: Path | None
) -> None:
    kind = "UDID" if by_udid else "serial"
    try:
        result = lab.enrol(device, use_udid=by_udid)
    except AcmeError as exc:
        codes = [t for t in exc.types if t.startswith("urn:smallstep:acme:error:")]
        detail = "; ".join(str(s.get("detail", "")) for s in exc.subproblems) or exc.detail
        reason = codes[0].rsplit(":", 1)[-1] if codes else exc.type.rsplit(":", 1)[-1]
        print(f"REFUSED  {label} by {kind}: {reason}: {detail}")
        return
    summary = summarize(result.leaf)
    saved = ""
    if out is not None:  # only a --dir outlives the run
        path = out / f"{result.identifier.replace('/', '_')}.crt"
        path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in result.chain))
        saved = f" -> {path}"
    print(f"ISSUED   {label} by {kind} in {result.seconds * 1000:.0f} ms{saved}")
    for key, value in (
        ("subject CN", summary.common_name),
        ("subject OU", ", ".join(summary.organizational_units) or None),
        ("subject serialNumber", summary.serial_number),
        ("email SAN", ", ".join(summary.emails) or None),
        ("permanentIdentifier", ", ".join(summary.permanent_identifiers) or None),
        ("department (1.3.6.1.4.1.99999.1)", summary.department),
    ):
        if value:
            print(f"         {key}: {value}")
