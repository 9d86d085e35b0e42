// The signalling connection of a call (docs/protocol.md), kept alive across
// network trouble: when the WebSocket drops, it reconnects with backoff and
// resumes the same session (the `resume` token from `joined`) for as long as
// the server waits (`grace_ms`). Both sides number the messages they send
// after `joined`; on resuming each sends again what the other missed, so no
// message is lost or doubled.
(function () {
  'use strict';

  const KEEP = 512;            // sent messages kept for replay (the server keeps as many)
  // Waits between attempts (the last repeats), each ±25 % so that clients
  // of a restarted server do not come back in step.
  const BACKOFF_MS = [250, 500, 1000, 2000];

  // opts: url, join ({type:'join', ...}), onMessage(msg), onState(state)
  //   with state 'connected' | 'reconnecting' | 'resumed', and
  //   onLost({code, message}) when it gives up.
  class Signal {
    constructor(opts) {
      this.opts = opts;
      this.ws = null;
      this.resume = null;      // {token, grace_ms} from joined
      this.received = 0;       // numbered messages received
      this.sent = 0;           // numbered messages sent
      this.kept = [];          // the last KEEP of them
      this.resumes = 0;        // how often a session was resumed (tests)
      this.ended = false;
      this.lostAt = 0;
      this.connect(false);
    }

    // Numbered messages: everything after joined but joined, resumed and closed.
    static numbered(type) { return type !== 'joined' && type !== 'resumed' && type !== 'closed'; }

    send(msg) {
      const text = JSON.stringify(msg);
      if (this.resume) {
        this.sent += 1;
        this.kept.push(text);
        if (this.kept.length > KEEP) this.kept.shift();
      }
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    }

    // Moves the session to a new connection now (the network changed, so
    // the current one may be dead without knowing it yet).
    reconnect() {
      if (this.ended || !this.resume || !this.resume.grace_ms) return;
      const old = this.ws;
      this.ws = null;
      // 4000: not a leave; the server waits for the resume (docs/protocol.md).
      if (old) { old.onclose = null; old.onmessage = null; old.close(4000, 'moving'); }
      this.lostAt = this.lostAt || Date.now();
      this.attempt = 0;
      this.connect(true);
    }

    // Stops for good (the session is over).
    end() {
      this.ended = true;
      if (this.ws) this.ws.close();
    }

    connect(resuming) {
      const ws = new WebSocket(this.opts.url);
      this.ws = ws;
      ws.onopen = () => {
        const first = resuming ? { type: 'resume', token: this.resume.token, received: this.received } : this.opts.join;
        ws.send(JSON.stringify(first));
      };
      ws.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        if (Signal.numbered(msg.type)) this.received += 1;
        if (msg.type === 'joined') this.resume = msg.resume || null;
        if (msg.type === 'resumed') return this.onResumed(msg);
        if (msg.type === 'closed') this.ended = true;
        this.opts.onMessage(msg);
      };
      ws.onclose = () => {
        if (this.ws !== ws || this.ended) return;
        if (!this.resume || !this.resume.grace_ms) {
          this.ended = true;
          return this.opts.onLost({ code: 'disconnected' });
        }
        if (!this.lostAt) {
          this.lostAt = Date.now();
          this.attempt = 0;
          this.opts.onState('reconnecting');
        }
        this.retry();
      };
    }

    retry() {
      const waited = Date.now() - this.lostAt;
      if (waited >= this.resume.grace_ms) {
        this.ended = true;
        return this.opts.onLost({ code: 'unreachable', message: 'could not reach the server again' });
      }
      const step = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.75 + Math.random() / 2);
      const delay = Math.min(step, this.resume.grace_ms - waited);
      this.attempt += 1;
      setTimeout(() => { if (!this.ended) this.connect(true); }, delay);
    }

    onResumed(msg) {
      // Send again what the server did not get.
      const missing = this.sent - msg.received;
      for (const text of this.kept.slice(Math.max(0, this.kept.length - missing))) this.ws.send(text);
      this.lostAt = 0;
      this.resumes += 1;
      this.opts.onState('resumed');
    }
  }

  window.SwitchboardSignal = Signal;
})();
