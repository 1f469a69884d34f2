"""Throwaway capture server: writes each decompressed request body to out/NNN.bin."""
import gzip, http.server, os, sys, zlib, itertools
import brotli

OUT = sys.argv[2] if len(sys.argv) > 2 else "out"
os.makedirs(OUT, exist_ok=True)
counter = itertools.count()

class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        enc = (self.headers.get("Content-Encoding") or "").lower()
        if enc == "gzip":
            body = gzip.decompress(body)
        elif enc == "br":
            body = brotli.decompress(body)
        elif enc == "deflate":
            body = zlib.decompress(body)
        os.makedirs(OUT, exist_ok=True)
        n = next(counter)
        with open(os.path.join(OUT, f"{n:03d}.bin"), "wb") as f:
            f.write(body)
        with open(os.path.join(OUT, f"{n:03d}.path"), "w") as f:
            f.write(self.path + "\n" + str(self.headers))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id":"x"}')
    def log_message(self, *a):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
