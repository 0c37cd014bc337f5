"""How the test clients reach a streaming URL: plain TCP for http://, TLS for https:// (with the
test CA, set once per process by `trust`), offering ALPN as the protocol on top would."""
import socket
import ssl
import urllib.parse

_context: dict = {}


def trust(ca_file: str, client_cert: str | None = None, client_key: str | None = None) -> None:
    """https:// URLs are verified against `ca_file`; a client certificate is offered if given."""
    _context["ca"] = ca_file
    _context["cert"] = (client_cert, client_key) if client_cert else None


def tls_context(alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=_context.get("ca"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if _context.get("cert"):
        context.load_cert_chain(*_context["cert"])
    context.set_alpn_protocols(alpn)
    return context


def connect(url: str, timeout: float, alpn: list[str]) -> socket.socket:
    """A connected socket to the URL's host and port; over TLS for https://."""
    parsed = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
    if parsed.scheme == "https":
        sock = tls_context(alpn).wrap_socket(sock, server_hostname=parsed.hostname)
    return sock


def scheme(url: str) -> str:
    """The :scheme pseudo-header for the URL."""
    return urllib.parse.urlsplit(url).scheme


def websocket_sslopt() -> dict:
    """websocket-client's TLS options for wss:// URLs."""
    options = {"ca_certs": _context["ca"]} if _context.get("ca") else {}
    if _context.get("cert"):
        options["certfile"], options["keyfile"] = _context["cert"]
    return options


def websocket_v5_exec(url: str, stdin: bytes | None = None) -> bytes:
    """A v5 WebSocket exec with websocket-client, read to its close frame: sends `stdin` (then
    closes stdin with v5's CLOSE) if given, and returns stdout's bytes."""
    import websocket

    ws = websocket.create_connection(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"], timeout=30)
    stdout = b""
    try:
        if stdin is not None:
            ws.send_binary(b"\x00" + stdin)
            ws.send_binary(b"\xff\x00")
        while True:
            opcode, payload = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return stdout
            if opcode == websocket.ABNF.OPCODE_BINARY and payload[:1] == b"\x01":
                stdout += payload[1:]
    finally:
        ws.close()
