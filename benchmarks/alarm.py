"""How long from an alarm entering ALARM to the channel's message?

    .venv/bin/python benchmarks/alarm.py [--repeat 3] [--interval 5s]

Serves the demo incident, puts every alarm in OK, starts `rmsops watch --notify URL` with a
Slack-like webhook on 127.0.0.1 (tests/webhook.py), waits for its first look, then puts one alarm
in ALARM (moto's `set_alarm_state`) and times until the webhook receives the message. Each turn
uses a fresh output folder (so no state carries over) and another alarm. The figure is up to one
`--interval` of waiting plus a full triage and the message.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.triage import BIN, serve_demo  # noqa: E402
from tests.webhook import Receiver  # noqa: E402


def cloudwatch(env_file: Path):
    aws = yaml.safe_load(env_file.read_text())["aws"]
    return boto3.client("cloudwatch", region_name=aws["region"], endpoint_url=aws["endpoint_url"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def one_turn(env_file: Path, alarm: str, alarms: list[str], interval: str, folder: Path) -> float:
    client = cloudwatch(env_file)
    for name in alarms:
        client.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="benchmark: reset")
    hook = Receiver([200])
    log = folder / "watch.log"
    with log.open("w") as output:
        watch = subprocess.Popen([str(BIN / "rmsops"), "watch", "-e", str(env_file), "-o", str(folder / "out"),
                                  "--interval", interval, "--notify", hook.url], stdout=output,
                                 stderr=subprocess.STDOUT)
    try:
        while "every" not in log.read_text():  # its banner: the first look is done
            if watch.poll() is not None:
                raise SystemExit(f"rmsops watch ended: {log.read_text()}")
            time.sleep(0.1)
        began = time.monotonic()
        client.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="benchmark: fire")
        while not hook.bodies:
            if time.monotonic() - began > 300:
                raise SystemExit("no message within 300 s")
            time.sleep(0.05)
        return time.monotonic() - began
    finally:
        watch.terminate()
        watch.wait(60)
        hook.server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--interval", default="5s")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rmsops-alarm-bench-") as tmp:
        demo, env_file = serve_demo("incident", Path(tmp))
        try:
            alarms = [a["AlarmName"] for a in cloudwatch(env_file).describe_alarms()["MetricAlarms"]]
            seconds = []
            for turn in range(options.repeat):
                folder = Path(tmp) / f"turn-{turn}"
                folder.mkdir()
                alarm = alarms[turn % len(alarms)]
                seconds.append(one_turn(env_file, alarm, alarms, options.interval, folder))
                print(f"turn {turn + 1}: {alarm}: set_alarm_state -> webhook message {seconds[-1]:.1f} s")
            print(f"median over {len(seconds)} turns (--interval {options.interval}): "
                  f"{statistics.median(seconds):.1f} s (min {min(seconds):.1f}, max {max(seconds):.1f})")
        finally:
            demo.terminate()
            demo.wait(60)


if __name__ == "__main__":
    main()
