// File transfer over the room's data channel, through the SFU.
//
// Control messages are JSON text (relayed to everyone; `to` picks the reader):
//   {t:'file-offer', id, name, size, mime}    sender -> all
//   {t:'file-ack', id, to, bytes}             receiver -> sender, every ACK_EVERY bytes
//   {t:'file-end', id, sha256}                sender -> all, after the last chunk
//   {t:'file-done', id, to, ok, reason?}      receiver -> sender, after checking
//   {t:'file-cancel', id, reason}             either side
// Chunks are binary: 'F', 16 ASCII bytes of id, u32 big-endian sequence, data.
//
// Flow control is end to end: the sender keeps at most WINDOW bytes beyond
// what its slowest receiver acknowledged, so neither its own buffer nor the
// server's (1 MiB per recipient) grows without bound. A chunk that does not
// arrive in sequence (the server dropped it) fails the transfer.
'use strict';

(function () {
  const CHUNK = 16 * 1024;
  const WINDOW = 256 * 1024;
  const ACK_EVERY = 64 * 1024;
  const HIGH_WATER = 1024 * 1024;     // our own channel's send buffer
  const STALL = 30000;                // no progress for this long: give up
  const HEADER = 1 + 16 + 4;

  const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
  const sha256 = async (buf) => hex(await crypto.subtle.digest('SHA-256', buf));
  const randomId = () => hex(crypto.getRandomValues(new Uint8Array(8)).buffer);
  const fmtSize = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`);

  class Files {
    // list: <ul> for transfer rows; channel: RTCDataChannel; me(), peers(): identities.
    constructor({ list, channel, me, peers }) {
      Object.assign(this, { list, channel, me, peers });
      this.outgoing = new Map();
      this.incoming = new Map();
      this.done = [];   // finished transfers, for tests: {id, direction, name, size, ok, sha256, ms, reason}
    }

    row(label, cancel) {
      const li = document.createElement('li');
      li.className = 'transfer';
      const name = document.createElement('span');
      name.className = 'transfer-name';
      name.textContent = label;
      const bar = document.createElement('progress');
      bar.max = 1; bar.value = 0;
      bar.setAttribute('aria-label', `Progress of ${label}`);
      const status = document.createElement('span');
      status.className = 'transfer-status';
      status.setAttribute('role', 'status');
      const stop = document.createElement('button');
      stop.type = 'button'; stop.textContent = 'Cancel transfer';
      stop.onclick = cancel;
      li.append(name, bar, status, stop);
      this.list.append(li);
      return { li, bar, status, stop };
    }

    sendText(obj) { this.channel.send(JSON.stringify(obj)); }

    async send(file) {
      const recipients = new Set(this.peers());
      if (!recipients.size) return void this.row(file.name, () => {}).status.replaceChildren('Nobody else is in the call');
      const id = randomId();
      const t = { id, file, recipients, active: new Set(recipients), acked: new Map([...recipients].map((r) => [r, 0])), results: new Map(), wake: null, failed: null, started: performance.now() };
      t.ui = this.row(`${file.name} (${fmtSize(file.size)}) to ${[...recipients].join(', ')}`, () => this.cancelOut(t, 'cancelled by you', true));
      this.outgoing.set(id, t);
      this.sendText({ t: 'file-offer', id, name: file.name, size: file.size, mime: file.type });
      try {
        let offset = 0, seq = 0;
        while (offset < file.size || file.size === 0) {
          await this.room(t, offset);
          if (t.failed) return;
          const data = new Uint8Array(await file.slice(offset, offset + CHUNK).arrayBuffer());
          const msg = new Uint8Array(HEADER + data.length);
          msg[0] = 0x46; // 'F'
          msg.set(new TextEncoder().encode(id), 1);
          new DataView(msg.buffer).setUint32(17, seq);
          msg.set(data, HEADER);
          this.channel.send(msg);
          offset += data.length; seq += 1;
          t.ui.bar.value = file.size ? offset / file.size : 1;
          if (file.size === 0) break;
        }
        t.ui.status.textContent = 'Checking…';
        const sum = await sha256(await file.arrayBuffer());
        t.sha256 = sum;
        this.sendText({ t: 'file-end', id, sha256: sum });
        t.ui.status.textContent = 'Sent; waiting for the receivers to check it';
      } catch (e) {
        this.cancelOut(t, `failed: ${e.message || e}`, true);
      }
    }

    // Waits until another chunk fits: the window towards the slowest
    // recipient and our own send buffer.
    async room(t, offset) {
      let last = performance.now(), lastMin = -1;
      for (;;) {
        if (t.failed) return;
        for (const r of [...t.active]) if (!this.peers().includes(r)) this.dropRecipient(t, r, 'left the call');
        if (t.failed) return;
        if (!t.active.size) return this.cancelOut(t, 'no receiver is left', false);
        const min = Math.min(...[...t.active].map((r) => t.acked.get(r)));
        if (min !== lastMin) { lastMin = min; last = performance.now(); }
        if (offset - min <= WINDOW && this.channel.bufferedAmount <= HIGH_WATER) return;
        if (performance.now() - last > STALL) return this.cancelOut(t, 'no progress from the receivers', true);
        if (this.channel.readyState !== 'open') return this.cancelOut(t, 'the connection closed', false);
        await new Promise((resolve) => {
          t.wake = resolve;
          this.channel.addEventListener('bufferedamountlow', resolve, { once: true });
          setTimeout(resolve, 250);
        });
      }
    }

    // A receiver is out of this transfer (left, refused or cancelled).
    dropRecipient(t, who, reason) {
      if (!t.active.delete(who) || t.results.has(who)) return;
      t.results.set(who, { ok: false, reason });
      this.settleOut(t);
    }

    cancelOut(t, reason, tell) {
      if (t.failed) return;
      t.failed = reason;
      if (tell && this.channel.readyState === 'open') this.sendText({ t: 'file-cancel', id: t.id, reason });
      this.finishRow(t.ui, `Not sent: ${reason}`);
      this.record(t.id, 'out', t.file.name, t.file.size, false, t.sha256, t.started, reason);
      this.outgoing.delete(t.id);
    }

    // Reports the outcome once every receiver has one.
    settleOut(t) {
      if (t.failed || [...t.recipients].some((r) => !t.results.has(r))) return;
      const parts = [...t.results].map(([who, r]) => (r.ok ? `${who}: delivered, checksum verified` : `${who}: failed (${r.reason})`));
      const ok = [...t.results.values()].every((r) => r.ok);
      this.finishRow(t.ui, parts.join('; '));
      this.record(t.id, 'out', t.file.name, t.file.size, ok, t.sha256, t.started, ok ? null : parts.join('; '));
      this.outgoing.delete(t.id);
    }

    finishRow(ui, text) {
      ui.status.textContent = text;
      ui.stop.remove();
    }

    record(id, direction, name, size, ok, sum, started, reason) {
      this.done.push({ id, direction, name, size, ok, sha256: sum || null, ms: Math.round(performance.now() - started), reason: reason || null });
    }

    onText(from, m) {
      const me = this.me();
      switch (m.t) {
        case 'file-offer': {
          if (this.incoming.has(m.id)) return;
          const r = { id: m.id, from, name: String(m.name || 'file'), size: Number(m.size) || 0, mime: String(m.mime || ''), chunks: [], received: 0, acked: 0, next: 0, started: performance.now(), failed: null };
          r.ui = this.row(`${r.name} (${fmtSize(r.size)}) from ${from}`, () => this.failIn(r, 'cancelled by you', true));
          this.incoming.set(m.id, r);
          break;
        }
        case 'file-end': {
          const r = this.incoming.get(m.id);
          if (r && r.from === from) this.finishIn(r, String(m.sha256));
          break;
        }
        case 'file-cancel': {
          const r = this.incoming.get(m.id);
          if (r && r.from === from) this.failIn(r, `the sender stopped: ${m.reason}`, false);
          const t = this.outgoing.get(m.id);
          if (t) this.dropRecipient(t, from, m.reason);
          break;
        }
        case 'file-ack': {
          const t = this.outgoing.get(m.id);
          if (m.to === me && t && t.acked.has(from)) { t.acked.set(from, Number(m.bytes)); if (t.wake) t.wake(); }
          break;
        }
        case 'file-done': {
          const t = this.outgoing.get(m.id);
          if (m.to !== me || !t || !t.active.has(from)) break;
          if (m.ok) { t.results.set(from, { ok: true }); this.settleOut(t); } else this.dropRecipient(t, from, m.reason);
          break;
        }
      }
    }

    onBinary(from, bytes) {
      if (bytes.length < HEADER || bytes[0] !== 0x46) return;
      const id = new TextDecoder().decode(bytes.subarray(1, 17));
      const r = this.incoming.get(id);
      if (!r || r.from !== from || r.failed) return;
      const seq = new DataView(bytes.buffer, bytes.byteOffset + 17, 4).getUint32(0);
      if (seq !== r.next) return this.failIn(r, `chunk ${r.next} was lost on the way`, true);
      r.next += 1;
      const data = bytes.slice(HEADER);
      r.chunks.push(data);
      r.received += data.length;
      if (r.received > r.size) return this.failIn(r, 'more data than announced', true);
      r.ui.bar.value = r.size ? r.received / r.size : 1;
      if (r.received - r.acked >= ACK_EVERY || r.received === r.size) {
        r.acked = r.received;
        this.sendText({ t: 'file-ack', id, to: from, bytes: r.received });
      }
    }

    async finishIn(r, expected) {
      if (r.failed) return;
      if (r.received !== r.size) return this.failIn(r, `got ${r.received} of ${r.size} bytes`, true);
      r.ui.status.textContent = 'Checking…';
      const blob = new Blob(r.chunks, { type: r.mime || 'application/octet-stream' });
      r.chunks = [];
      const sum = await sha256(await blob.arrayBuffer());
      if (sum !== expected) return this.failIn(r, 'checksum mismatch', true);
      this.sendText({ t: 'file-done', id: r.id, to: r.from, ok: true });
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = r.name;
      a.textContent = `Download ${r.name}`;
      r.ui.status.replaceChildren('Checksum verified. ', a);
      r.ui.stop.remove();
      this.incoming.delete(r.id);
      this.record(r.id, 'in', r.name, r.size, true, sum, r.started, null);
    }

    failIn(r, reason, tell) {
      if (r.failed) return;
      r.failed = reason;
      r.chunks = [];
      if (tell && this.channel.readyState === 'open') {
        this.sendText({ t: 'file-done', id: r.id, to: r.from, ok: false, reason });
      }
      this.finishRow(r.ui, `Not received: ${reason}`);
      this.incoming.delete(r.id);
      this.record(r.id, 'in', r.name, r.size, false, null, r.started, reason);
    }

    peerLeft(identity) {
      for (const r of [...this.incoming.values()]) if (r.from === identity) this.failIn(r, 'the sender left', false);
      for (const t of [...this.outgoing.values()]) this.dropRecipient(t, identity, 'left the call');
    }

    abortAll(reason) {
      for (const r of [...this.incoming.values()]) this.failIn(r, reason, false);
      for (const t of [...this.outgoing.values()]) this.cancelOut(t, reason, false);
    }
  }

  window.SwitchboardFiles = Files;
})();
