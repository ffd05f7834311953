// `dsserve serve` as a child process of a node test: started on port 0, resolved once it reports the
// port it listens on, killed when the test process exits if it is still running.
import { spawn } from 'node:child_process';

const running = new Set();
process.on('exit', () => { for (const p of running) try { p.kill('SIGKILL'); } catch {} });

// Runs `bin serve ...args`; `wrap` prefixes the command (e.g. ['prlimit', '--nofile=64']), `echo`
// copies its stderr to this process's, `stdout` is the child's stdout ('ignore' or 'inherit').
// Resolves to { url, port, proc, exited, log(), stop(graceMs) }; stop sends SIGTERM, then SIGKILL
// after graceMs, and resolves to the exit ({ code, sig }) or null when it had to kill.
export async function serve(bin, args, { wrap = [], readyTimeoutMs = 60000, echo = false, stdout = 'ignore' } = {}) {
  const argv = [...wrap.slice(1), ...(wrap.length ? [bin] : []), 'serve', ...args];
  const proc = spawn(wrap.length ? wrap[0] : bin, argv, { stdio: ['ignore', stdout, 'pipe'] });
  running.add(proc);
  let text = '';
  proc.stderr.on('data', (d) => {
    text += d.toString();
    if (echo) process.stderr.write(d);
  });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => { running.delete(proc); r({ code, sig }); }));
  const port = await new Promise((resolve, reject) => {
    const poll = setInterval(() => {
      const m = text.match(/dsserve: listening on [^:\s]+:(\d+)/);
      if (m) { clearTimeout(timer); clearInterval(poll); resolve(Number(m[1])); }
    }, 20);
    const timer = setTimeout(() => {
      clearInterval(poll);
      reject(new Error(`server did not start within ${readyTimeoutMs / 1000} s:\n${text}`));
    }, readyTimeoutMs);
    proc.on('exit', (code) => { clearTimeout(timer); clearInterval(poll); reject(new Error(`server exited with ${code}:\n${text}`)); });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    exited,
    log: () => text,
    async stop(graceMs = 20000) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const r = await Promise.race([exited, new Promise((res) => setTimeout(() => res(null), graceMs))]);
      if (r === null) proc.kill('SIGKILL');
      return r;
    },
  };
}
