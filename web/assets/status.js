// The status panel: the server's own numbers from GET /get_server_info (internal_states), refreshed
// every few seconds while the page is visible: running and queued requests, KV-cache use, prefix-cache
// hit rate, decode throughput, and the speculative acceptance length when EAGLE/NEXTN is on.
import { serverInfo, ApiError } from './api.js';

const REFRESH_MS = 3000;

function percent(x) {
  return Number.isFinite(x) ? `${(100 * x).toFixed(x > 0 && x < 0.001 ? 3 : 1)}%` : '–';
}

// The rows shown for one /get_server_info answer: [label, value, key] (key names the row for tests).
export function statusRows(info) {
  const s = (info.internal_states && info.internal_states[0]) || {};
  const pageSize = s.page_size || 1;
  const used = (s.kv_pages_used || 0) * pageSize;
  const total = (s.kv_pages_total || 0) * pageSize;
  const hit = s.prompt_tokens_total > 0 ? s.cached_tokens_total / s.prompt_tokens_total : 0;
  const rows = [
    ['Running', String(s.num_running_reqs ?? '–'), 'running'],
    ['Queued', String(s.num_queue_reqs ?? '–'), 'queued'],
    ['KV cache', total ? `${percent(used / total)} of ${total.toLocaleString('en-US', { notation: 'compact' })} tokens` : '–', 'kv'],
    ['Prefix hit', percent(hit), 'prefix-hit'],
    ['Decode', `${(s.last_gen_throughput || 0).toFixed(1)} tok/s`, 'decode'],
  ];
  if (info.speculative_algorithm) {
    rows.push(['Spec. accept', `${(s.avg_spec_accept_length || 0).toFixed(2)} tok/verify (${info.speculative_algorithm})`,
      'spec']);
  }
  if (info.device) rows.push(['Device', String(info.device), 'device']);
  return rows;
}

export function startStatus({ list, state, onAuthError }) {
  let timer = null;
  async function refresh() {
    timer = null;
    if (document.hidden) return;
    try {
      const info = await serverInfo();
      const frag = document.createDocumentFragment();
      for (const [label, value, key] of statusRows(info)) {
        const dt = document.createElement('dt');
        dt.textContent = label;
        const dd = document.createElement('dd');
        dd.textContent = value;
        dd.dataset.key = key;
        frag.append(dt, dd);
      }
      list.replaceChildren(frag);
      const running = info.internal_states?.[0]?.num_running_reqs || 0;
      state.textContent = running ? 'busy' : 'idle';
      state.className = `pill ${running ? 'busy' : 'ok'}`;
    } catch (e) {
      state.textContent = e instanceof ApiError && e.status === 401 ? 'key needed' : 'unreachable';
      state.className = 'pill bad';
      if (e instanceof ApiError && e.status === 401) onAuthError(e);
    }
    schedule();
  }
  function schedule() {
    if (!timer) timer = setTimeout(refresh, REFRESH_MS);
  }
  document.addEventListener('visibilitychange', () => { if (!document.hidden) { clearTimeout(timer); refresh(); } });
  refresh();
  return { refresh: () => { clearTimeout(timer); refresh(); } };
}
