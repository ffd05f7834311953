// What the page keeps in the browser's localStorage: the conversations (one key, a JSON list of
// {id, title, updated, messages}), the settings, the API key and which conversation is open. Only
// plain data; rendering is elsewhere.

const KEYS = {
  conversations: 'dsserve.conversations',
  current: 'dsserve.current',
  settings: 'dsserve.settings',
  apiKey: 'dsserve.api_key',
};

export const DEFAULT_SETTINGS = {
  system_prompt: '',
  temperature: '',
  top_p: '',
  max_tokens: '1024',
  theme: 'auto',
  extra_json: '',
  model: '',
};

function read(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v === null ? fallback : JSON.parse(v);
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false;  // storage full or disabled: the page still works, without keeping history
  }
}

export function loadConversations() {
  const list = read(KEYS.conversations, []);
  return Array.isArray(list) ? list.filter((c) => c && typeof c.id === 'string' && Array.isArray(c.messages)) : [];
}
export const saveConversations = (list) => write(KEYS.conversations, list);

export const loadCurrentId = () => read(KEYS.current, null);
export const saveCurrentId = (id) => write(KEYS.current, id);

export function loadSettings() {
  const s = read(KEYS.settings, {});
  return { ...DEFAULT_SETTINGS, ...(s && typeof s === 'object' ? s : {}) };
}
export const saveSettings = (s) => write(KEYS.settings, s);

export const loadApiKey = () => read(KEYS.apiKey, '');
export const saveApiKey = (k) => (k ? write(KEYS.apiKey, k) : localStorage.removeItem(KEYS.apiKey));

export function newConversation() {
  const id = (crypto.randomUUID && crypto.randomUUID()) || `c${Date.now()}${Math.random().toString(16).slice(2)}`;
  return { id, title: 'New chat', updated: Date.now(), messages: [] };
}

// A title from the first user message: its first line, at most 48 characters.
export function titleOf(conversation) {
  const first = conversation.messages.find((m) => m.role === 'user');
  if (!first || !first.content) return 'New chat';
  const line = first.content.trim().split('\n')[0];
  return line.length > 48 ? `${line.slice(0, 47)}…` : line || 'New chat';
}
