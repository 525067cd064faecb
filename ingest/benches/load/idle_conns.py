#!/usr/bin/env python3
"""Resident memory of a server holding N idle keep-alive connections.

Usage: idle_conns.py PORT PID [N] [silent]   (the open-files limit must be above N)

Opens N connections to 127.0.0.1:PORT; each sends one JavaScript-tracker-like hit, reads the
answer and stays open. Then the last 100 send a second hit, which must be answered (the
connections are alive, not just accepted). Prints the server's VmRSS (from /proc/PID/status)
before, with the connections idle, and the growth per connection; then closes everything.
With `silent`, the connections send nothing at all (clients that connect and wait).
"""

import asyncio
import sys

HIT = (
    "GET /matomo.php?idsite=1&rec=1&action_name=Home&url=http%3A%2F%2Fexample.com%2F"
    "&_id={vid:016x}&send_image=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) idle-test\r\n\r\n"
)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hit(reader, writer, vid):
    writer.write(HIT.format(vid=vid).encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())


async def main():
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    silent = len(sys.argv) > 4 and sys.argv[4] == "silent"
    before = rss_kib(pid)
    conns = []
    for start in range(0, count, 500):
        batch = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(start, min(count, start + 500)))
        )
        if not silent:
            await asyncio.gather(*(hit(r, w, start + i + 1) for i, (r, w) in enumerate(batch)))
        conns.extend(batch)
    await asyncio.sleep(2)
    if not silent:
        await asyncio.gather(*(hit(r, w, 0xABC00000 + i) for i, (r, w) in enumerate(conns[-100:])))
    await asyncio.sleep(1)
    idle = rss_kib(pid)
    print(
        f"connections={count}{' silent' if silent else ''} rss_before={before // 1024} MiB rss_idle={idle // 1024} MiB "
        f"({idle / 1024 * 1.048576:.0f} MB) per_connection={(idle - before) * 1024 / count / 1000:.1f} KB"
    )
    for _, writer in conns:
        writer.close()


asyncio.run(main())
