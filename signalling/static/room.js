// The room page: /room/{room}#token=… joins that room on load. The token
// travels in the fragment, which browsers never send: it stays out of the
// server's and proxies' logs (and no page sends a Referer at all).
import { startCall } from '/static/call.js';

const room = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
const mount = document.getElementById('call');
if (token) {
  startCall({ mount, token, room, title: `room ${room}`, leaveLabel: 'Leave' });
} else if (new URLSearchParams(location.search).has('token')) {
  mount.textContent = 'This link puts the access token after "?"; room links carry it after "#" (…/room/name#token=…).';
} else {
  mount.textContent = 'No access token in the link (…/room/name#token=…)';
}
