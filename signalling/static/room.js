// The room page: /room/{room}?token=… joins that room on load.
import { startCall } from '/static/call.js';

const room = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const token = new URLSearchParams(location.search).get('token') || '';
if (!token) {
  document.getElementById('call').textContent = 'No access token in the link (?token=…)';
} else {
  startCall({ mount: document.getElementById('call'), token, room, title: `room ${room}`, leaveLabel: 'Leave' });
}
