"""``vhdkit vmbus``: the synthetic NIC's VMBus buffers.

  plan --rate 200000pps [--quantum 10ms]   the receive buffer that sustains a packet rate when the
                                           guest drains it once per quantum, and the .reg file
                                           that sets it (--instance NNNN --reg FILE)
  simulate --rate 50k:300k:10k [--buffer 1M,2M,4M] [--arrivals poisson] [--plot loss.png]
                                           loss at each rate for each buffer size
  bench [--seconds 2]                      packets/s through a shared-memory ring between two
                                           processes, at 64, 256 and 1,500 bytes
"""

from __future__ import annotations

from vhdkit.errors import ChannelError

from .parsing import RAW_DESCRIPTION, Namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STANDARD_MB = (1, 2, 4)


def _usage(message: str) -> SystemExit:
    """A value on the command line that cannot be read: the message, exit 1 (as every command)."""
    return SystemExit(f"vhdkit vmbus: error: {message}")


def parse_rate(text: str) -> int:
    import re  # when a rate, time or size is given: not for --help

    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(k|m)?\s*(?:pps)?", text.strip().lower())
    if match is None:
        raise _usage(f"{text!r} is not a packet rate (200000pps, 200kpps, 1.5mpps)")
    scale = {"k": 1_000, "m": 1_000_000, None: 1}[match.group(2)]
    return int(float(match.group(1)) * scale)


def parse_rates(text: str) -> list[int]:
    """"65500", "50k,100k" or a range "50k:300k:10k" (first:last:step)."""
    if ":" in text:
        first, last, step = (parse_rate(p) for p in text.split(":"))
        if step <= 0 or last < first:
            raise _usage(f"{text!r}: a range is first:last:step with first <= last and a positive step")
        return list(range(first, last + 1, step))
    return [parse_rate(p) for p in text.split(",")]


def parse_duration_ns(text: str) -> int:
    import re  # when a rate, time or size is given: not for --help

    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ns|us|ms|s)", text.strip())
    if match is None:
        raise _usage(f"{text!r} is not a duration (10ms, 500us, 0.01s)")
    value = float(match.group(1)) * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[match.group(2)]
    if value <= 0:
        raise _usage("a quantum must be longer than zero")
    return int(value)


def parse_buffer(text: str) -> int:
    import re  # when a rate, time or size is given: not for --help

    match = re.fullmatch(r"(\d+)\s*(k|m)(?:i?b)?", text.strip().lower())
    if match is None:
        raise _usage(f"{text!r} is not a buffer size (1M, 2MB, 1536K)")
    return int(match.group(1)) << (10 if match.group(2) == "k" else 20)


def register(sub: Any, help: str) -> None:  # noqa: A002
    p = sub.add_parser("vmbus", help=help, description=__doc__, formatter_class=RAW_DESCRIPTION)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    plan = actions.add_parser("plan", help="the buffer size a packet rate needs, and its .reg file")
    plan.add_argument("--rate", required=True, help="packets per second (200000pps, 200kpps)")
    plan.add_argument("--quantum", default="10ms", help="how often the guest drains the buffer (default 10ms)")
    plan.add_argument("--packet-buffer", type=int, default=None,
                      help="bytes per packet buffer")
    plan.add_argument("--instance", help="the adapter's instance under the network class key (as 0007); "
                                         "needed with --reg")
    plan.add_argument("--reg", help="write the .reg file (UTF-16LE, as regedit) here")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(run=_plan)
    sim = actions.add_parser("simulate", help="loss by rate and buffer size")
    sim.add_argument("--rate", required=True, help="rates: 65500, 50k,100k, or first:last:step")
    sim.add_argument("--buffer", default="1M,2M,4M", help="buffer sizes (default 1M,2M,4M)")
    sim.add_argument("--quantum", default="10ms")
    sim.add_argument("--arrivals", choices=("constant", "poisson"), default="constant")
    sim.add_argument("--seconds", type=float, default=2.0, help="simulated time per point (default 2)")
    sim.add_argument("--plot", help="also draw loss against rate into this PNG file")
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(run=_simulate)
    bench = actions.add_parser("bench", help="ring throughput between two processes")
    how_long = bench.add_mutually_exclusive_group()
    how_long.add_argument("--seconds", type=float, default=2.0, help="per packet size (default 2)")
    how_long.add_argument("--packets", type=int, metavar="N", help="this many packets per size instead of a time")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(run=_bench)


def _plan(args: Namespace) -> int:
    import json

    from vhdkit.vmbus import sizing  # loaded when the action runs, not for --help
    from vhdkit.vmbus.registry import adapter_key, reg_file

    if args.packet_buffer is None:
        args.packet_buffer = sizing.PACKET_BUFFER

    rate, quantum = parse_rate(args.rate), parse_duration_ns(args.quantum)
    need = sizing.plan_for_rate(rate, quantum, args.packet_buffer)
    standard = [sizing.plan_for_size(mb << 20, quantum, args.packet_buffer) for mb in STANDARD_MB]
    if args.instance is not None:
        adapter_key(args.instance)  # four digits, or a RegistryError saying so
    if args.reg:
        if args.instance is None:  # a .reg for adapter 0000 would silently change whichever NIC that is
            raise _usage("a .reg file must name the adapter: --instance NNNN (the synthetic NIC's key under "
                         "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Class\\{4d36e972-...}, as 0007)")
        data = reg_file(args.instance, need.buffer_bytes, need.buffer_bytes)
        with open(args.reg, "wb") as f:
            f.write(data)
    if args.json:
        print(json.dumps({"rate": rate, "quantum_ns": quantum, "needed": need._asdict(),
                          "standard": [p._asdict() for p in standard], "reg_file": args.reg}))
        return 0
    print(f"{rate:,} packets/s drained every {quantum / 1e6:g} ms needs {need.buffers:,} buffers of "
          f"{args.packet_buffer:,} bytes: a receive buffer of {need.kilobytes:,} KB (0x{need.kilobytes:x})")
    for plan in standard:
        verdict = "enough" if plan.max_packets_per_second >= rate else "too small"
        print(f"  {plan.buffer_bytes >> 20} MB: {plan.buffers:,} buffers, up to {plan.max_packets_per_second:,} "
              f"packets/s - {verdict}")
    print(f"registry: ReceiveBufferSize and SendBufferSize = dword:{need.kilobytes:08x} (KB)"
          + (f", written to {args.reg}" if args.reg else " (--reg FILE writes the .reg file)"))
    return 0


def _simulate(args: Namespace) -> int:
    import json

    from vhdkit.vmbus import sizing  # loaded when the action runs, not for --help

    rates = parse_rates(args.rate)
    quantum = parse_duration_ns(args.quantum)
    sizes = [parse_buffer(b) for b in args.buffer.split(",")]
    duration = int(args.seconds * sizing.NS)
    table: dict[str, list[float]] = {}
    for size in sizes:
        buffers = sizing.buffers_in(size)
        name = f"{size >> 20}MB" if size % (1 << 20) == 0 else f"{size >> 10}KB"
        table[name] = [sizing.simulate(r, buffers, quantum_ns=quantum, duration_ns=duration,
                                       arrivals=args.arrivals).fraction for r in rates]
    if args.plot:
        from vhdkit.vmbus.plot import loss_chart

        with open(args.plot, "wb") as f:
            f.write(loss_chart(rates, table))
    if args.json:
        print(json.dumps({"rates": rates, "arrivals": args.arrivals, "quantum_ns": quantum, "loss": table}))
        return 0
    print("packets/s  " + "  ".join(f"{name:>9}" for name in table))
    for i, rate in enumerate(rates):
        print(f"{rate:>9,}  " + "  ".join(f"{table[name][i]:>9.4%}" for name in table))
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _bench(args: Namespace) -> int:
    import json

    from vhdkit.vmbus.channel import two_processes

    rows = []
    for size in (64, 256, 1500):
        result = (two_processes(size, count=args.packets) if args.packets
                  else two_processes(size, seconds=args.seconds))
        if result.bad or result.received != result.sent:
            raise ChannelError(f"{size}-byte packets: {result.sent} sent, {result.received} received, {result.bad} bad")
        rows.append({"payload_bytes": size, "packets_per_second": round(result.packets_per_second),
                     "packets": result.received})
    if args.json:
        print(json.dumps(rows))
        return 0
    print("payload  packets/s   MB/s")
    for row in rows:
        mbps = row["packets_per_second"] * row["payload_bytes"] / 1e6
        print(f"{row['payload_bytes']:>7}  {row['packets_per_second']:>9,}  {mbps:>5.0f}")
    return 0
