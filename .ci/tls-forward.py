"""A loopback TLS front for a plain-HTTP test server, for `.ci/image`'s trust-store check.

    python3 .ci/tls-forward.py CERT KEY TARGET_PORT PORT_FILE

Listens on 127.0.0.1 (a free port, written to PORT_FILE once it listens), terminates TLS with
CERT/KEY and pipes the bytes to 127.0.0.1:TARGET_PORT. Runs until killed. A client that refuses
the certificate makes the handshake fail here: asyncio logs that, and the listener goes on.
"""

import asyncio
import os
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(cert, key, target_port, port_file):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    # Written whole, then renamed: a reader never sees half a number.
    with open(port_file + ".partial", "w") as f:
        f.write(str(port))
    os.rename(port_file + ".partial", port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    cert, key, target, port_file = sys.argv[1:5]
    asyncio.run(main(cert, key, int(target), port_file))
