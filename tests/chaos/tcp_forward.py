"""A TCP forwarder for the slow-broker scenario: ``tcp_forward.py LISTEN_HOST:PORT TARGET_HOST:PORT [DELAY_FILE]``.

Run inside the network namespace it holds the broker's listener for. When DELAY_FILE holds
a number, each chunk is held that many seconds before it is passed on (the fallback for
kernels without sch_netem; with netem the delay and loss are on the veth instead).
"""
import asyncio
import sys
from pathlib import Path


def _delay(path: Path | None) -> float:
    try:
        return float(path.read_text()) if path else 0.0
    except (OSError, ValueError):
        return 0.0


async def pipe(reader, writer, delay_file):
    try:
        while data := await reader.read(65536):
            d = _delay(delay_file)
            if d:
                await asyncio.sleep(d)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main() -> None:
    lhost, lport = sys.argv[1].rsplit(":", 1)
    thost, tport = sys.argv[2].rsplit(":", 1)
    delay_file = Path(sys.argv[3]) if len(sys.argv) > 3 else None

    async def handle(r1, w1):
        try:
            r2, w2 = await asyncio.open_connection(thost, int(tport))
        except OSError:
            w1.close()
            return
        await asyncio.gather(pipe(r1, w2, delay_file), pipe(r2, w1, delay_file))

    server = await asyncio.start_server(handle, lhost, int(lport), reuse_address=True)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
