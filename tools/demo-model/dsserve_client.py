"""A `dsserve serve` process on a model folder for the checks (loopback, the port it reports) and
small JSON-over-HTTP helpers; the process is always stopped on exit."""
import json
import re
import subprocess
import threading
import urllib.request


class Server:
    def __init__(self, binary, model_dir, extra=()):
        args = [binary, "serve", "--model-path", model_dir, "--host", "127.0.0.1", "--port", "0",
                "--context-length", "1024", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        port = None
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"dsserve: listening on [^:\s]+:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise RuntimeError("dsserve serve did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: [self.log.append(l) for l in self.proc.stderr], daemon=True).start()
        self.base = f"http://127.0.0.1:{port}"

    def post(self, route, body):
        req = urllib.request.Request(self.base + route, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())

    def get(self, route):
        with urllib.request.urlopen(self.base + route, timeout=60) as r:
            return json.loads(r.read())

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
