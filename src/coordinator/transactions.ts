/*
 * Transactions: SEND (bus1 tx.c + message.c; coordinator thread only).
 *
 * Global order: one transaction at a time is committed, with the next `seq`, and
 * written to every destination before the next request is looked at. A rejected
 * request changes nothing: every check (handles, destinations, quota of every
 * destination) runs before the first charge or write. A multicast is all or nothing,
 * unless partial, where each destination is accepted greedily in the order given and
 * the refused ones get a verdict each.
 *
 * Runs (CoordinatorCore, Runs): consecutive unicasts from one uid to one receiving peer,
 * and consecutive multicasts without handles to the same destination list (partial ones
 * too, as long as every destination passes: then partial changes nothing), are checked
 * against the receivers' headroom read once and charged once (CoordinatorCore.flushRun).
 * A send in a run is not validated again: its destinations were resolved and checked by
 * the send that opened the run, and nothing that could change them (another request of
 * the sender, a disconnect, a node's destruction, the owner's control requests) happens
 * while it is open, since it ends with the sender's batch.
 * Owns the scratch of the transaction being built (reused: the send path allocates
 * nothing per message).
 */

import {
  SEND_HEADER_WORDS, SEND_FLAG_PARTIAL, SEND_FLAG_WAIT, MAX_DESTINATIONS, MAX_HANDLES_PER_MESSAGE, KIND_DATA, DESC_CONTINUE,
  DESC_NHANDLES_SHIFT, INVALID_HANDLE, RING_TAIL, align8, messageBytes, TAG_MASK,
} from '../../shared/layout.js';
import type { PeerState, BusNode, Handle } from './peer-state.js';
import type { PoolSegment } from './pool.js';
import { countRefused, countSent } from './stats.js';
import {
  E_DQUOT, E_NXIO, E_SHUTDOWN, E_MSGSIZE, E_INVAL, E_NOTUNIQ, RUN_UNICAST, RUN_MULTICAST, clearList, type CoordinatorCore,
} from './core.js';
import type { Verdicts } from './verdicts.js';
import type { Receipts } from './receipts.js';
import type { Descriptors } from './descriptors.js';
import type { Handles } from './handles.js';

/** Multicasts of up to this many destinations are charged in runs (a send in a run compares its list with the run's). */
const RUN_MAX_DESTINATIONS = 64;

export class Transactions {
  // The open multicast run: the sender's destination ids in record order, and its
  // deliveries in commit order (grouped by receiving peer) with their `continue` flags.
  readonly runIds = new Int32Array(RUN_MAX_DESTINATIONS);
  runNdest = 0;
  readonly runNodes: BusNode[] = [];
  readonly runCont: boolean[] = [];
  // The open unicast run's last destination: a send to the same id skips the lookup.
  runUniId = -1;
  runUniNode: BusNode | null = null;
  // Scratch of the transaction being built.
  readonly txNodes: BusNode[] = [];
  readonly txDestIds: number[] = [];
  readonly txHandles: Handle[] = [];
  readonly txOrder: number[] = [];
  readonly txAccepted: boolean[] = [];
  /** The layer tag of the send being committed (flags' top bits), copied into its descriptors. */
  txTag = 0;

  constructor(
    readonly core: CoordinatorCore, readonly receipts: Receipts, readonly descriptors: Descriptors,
    readonly handles: Handles, readonly verdicts: Verdicts,
  ) {}

  send(sender: PeerState, w: number, len: number): number {
    const core = this.core;
    const i32 = sender.out.i32;
    const flags = i32[w + 1];
    const ndest = i32[w + 2] >>> 0;
    const nh = i32[w + 3] >>> 0;
    const plen = i32[w + 4] >>> 0;
    this.txTag = flags & TAG_MASK;
    if (len < SEND_HEADER_WORDS * 4) return core.fail(E_INVAL, 0);
    // ndest 0 is bus1's empty transaction: validated like any send, it delivers and charges nothing.
    if (ndest > MAX_DESTINATIONS || nh > MAX_HANDLES_PER_MESSAGE) return core.fail(E_INVAL, 0);
    if (plen > core.config.maxMessageBytes) return core.fail(E_MSGSIZE, plen);
    const idsBytes = align8(4 * (SEND_HEADER_WORDS + ndest + nh));
    if (idsBytes + plen > len) return core.fail(E_INVAL, 0);
    const partial = (flags & SEND_FLAG_PARTIAL) !== 0;
    if (nh === 0) {
      if (ndest === 1 && !partial) {
        const r = this.sendUnicast(sender, w, plen, idsBytes);
        if (r >= 0) return r;
        // Refused by the quick check: the general path below gives the exact verdict.
      } else if (core.runOpen && core.runKind === RUN_MULTICAST && this.sameDestinations(i32, w + SEND_HEADER_WORDS, ndest)) {
        // A partial multicast whose every destination passes is accepted whole, like any other.
        const bytes = messageBytes(plen, 0);
        if (core.runCount + 1 <= core.runHeadCount && core.runBytes + bytes <= core.runHeadBytes) {
          core.runCount++;
          core.runBytes += bytes;
          const seq = ++core.seq;
          const payloadOff = (w << 2) + idsBytes;
          const nodes = this.runNodes, cont = this.runCont;
          for (let k = 0; k < ndest; k++) {
            const node = nodes[k];
            this.deliver(sender, node.owner, node, seq, cont[k], payloadOff, plen, bytes, 0, 0);
          }
          return 0;
        }
        // Past the run's headroom: the general path below syncs receipts and gives the exact verdict.
      }
    }
    core.flushRun();

    // Resolve destinations: all checks before any change.
    const epoch = ++core.epoch;
    const nodes = this.handles.txNodes;
    const destIds = this.txDestIds;
    clearList(nodes);
    clearList(destIds);
    let idw = w + SEND_HEADER_WORDS;
    for (let i = 0; i < ndest; i++) {
      const id = i32[idw++] >>> 0;
      const h = sender.handles.get(id);
      if (h === undefined || h.refs - h.refsInFlight <= 0) return core.fail(E_NXIO, id);
      const node = h.node;
      if (node.txMark === epoch) return core.fail(E_NOTUNIQ, id);
      node.txMark = epoch;
      nodes.push(node);
      destIds.push(id);
    }
    const handles = this.txHandles;
    clearList(handles);
    let alive = 0;
    for (let i = 0; i < nh; i++) {
      const id = i32[idw++] >>> 0;
      const h = sender.handles.get(id);
      if (h === undefined || h.refs - h.refsInFlight <= 0) return core.fail(E_NXIO, id);
      handles.push(h);
      if (!h.node.destroyed) alive++;
    }
    const bytes = messageBytes(plen, nh);
    const accepted = this.txAccepted;
    clearList(accepted);
    if (!partial) {
      for (let i = 0; i < ndest; i++) {
        if (nodes[i].destroyed || !nodes[i].owner.open) return core.fail(E_SHUTDOWN, destIds[i]);
        accepted.push(true);
      }
      if (!this.checkDestinations(sender.uid, alive, bytes, -1)) return core.errCode;
    } else {
      // Per-destination results: accept greedily in the order given, report the others.
      let any = false;
      for (let i = 0; i < ndest; i++) {
        let ok = !(nodes[i].destroyed || !nodes[i].owner.open);
        if (!ok) core.fail(E_SHUTDOWN, destIds[i]);
        accepted.push(ok);
        if (ok) {
          ok = this.checkDestinations(sender.uid, alive, bytes, i);
          if (!ok) accepted[i] = false;
        }
        if (!ok) {
          this.verdicts.writeVerdict(sender, i32[w] >>> 0, core.errCode, core.errResource, destIds[i], core.errUid);
          countRefused(sender, core.errCode);
        }
        any ||= ok;
      }
      if (!any) {
        core.errCode = 0;
        // Every destination refused: the per-destination verdicts say why.
        return 0;
      }
    }
    if (partial) {
      // The last check may have been a refused one: check exactly the accepted set again.
      this.rebuildCharges(sender.uid, alive, bytes, ndest);
      if (core.charges.check() !== null) throw new Error('internal: accepted destinations no longer pass the quota');
    }
    core.charges.apply();

    // Commit: one sequence number, destinations grouped per receiving peer (for `continue`).
    const seq = ++core.seq;
    const order = this.txOrder;
    clearList(order);
    for (let i = 0; i < ndest; i++) if (accepted[i]) order.push(i);
    if (order.length > 1) sortByOwner(order, nodes);
    const payloadOff = (w << 2) + idsBytes;
    for (let k = 0; k < order.length; k++) {
      const node = nodes[order[k]];
      const target = node.owner;
      const cont = k + 1 < order.length && nodes[order[k + 1]].owner === target;
      this.deliver(sender, target, node, seq, cont, payloadOff, plen, bytes, alive, nh);
    }
    // Partial or not, a multicast that reached every destination may open a run.
    if (nh === 0 && ndest >= 2 && ndest <= RUN_MAX_DESTINATIONS && order.length === ndest) {
      this.openMulticastRun(sender.uid, i32, w, order, nodes);
    }
    return 0;
  }

  /**
   * Open a run after a multicast without handles passed the general path: later sends
   * from this sender to the same destination list skip resolution and the ChargeSet
   * (their charge is the run's, read from the ledgers as they are after this one).
   */
  openMulticastRun(uid: number, i32: Int32Array, w: number, order: number[], nodes: BusNode[]): void {
    const core = this.core;
    const ndest = order.length;
    core.flushRun();
    core.runBegin(RUN_MULTICAST, uid);
    for (let k = 0; k < ndest; k++) {
      const node = nodes[order[k]];
      this.runNodes[k] = node;
      this.runCont[k] = k + 1 < ndest && nodes[order[k + 1]].owner === node.owner;
      core.runAdd(node.owner);
    }
    for (let i = 0; i < ndest; i++) this.runIds[i] = i32[w + SEND_HEADER_WORDS + i];
    this.runNdest = ndest;
    core.runLimit();
  }

  /** True when the record's destination ids at word `at` are the open multicast run's. */
  sameDestinations(i32: Int32Array, at: number, ndest: number): boolean {
    if (ndest !== this.runNdest) return false;
    const ids = this.runIds;
    for (let i = 0; i < ndest; i++) if (i32[at + i] !== ids[i]) return false;
    return true;
  }

  /**
   * The common case, one destination and no handles, without the multicast machinery.
   * Consecutive ones from one uid to one receiving peer form a run: the receiver's
   * receipts are synced and its headroom (Ledger.headroom) read once, each message is
   * then checked with two comparisons, and the run is charged once (flushRun).
   * Returns 0 when delivered, an error code for a definite failure, or -1 when the quota
   * refused it on possibly stale receipts (the caller then takes the general path).
   */
  sendUnicast(sender: PeerState, w: number, plen: number, idsBytes: number): number {
    const core = this.core;
    const id = sender.out.i32[w + SEND_HEADER_WORDS] >>> 0;
    const inRun = core.runOpen && core.runKind === RUN_UNICAST;
    let node: BusNode;
    if (inRun && id === this.runUniId) {
      node = this.runUniNode!;
    } else {
      const h = sender.handles.get(id);
      if (h === undefined || h.refs - h.refsInFlight <= 0) return core.fail(E_NXIO, id);
      node = h.node;
      if (node.destroyed || !node.owner.open) return core.fail(E_SHUTDOWN, id);
      this.runUniId = id;
      this.runUniNode = node;
    }
    const target = node.owner;
    const uid = sender.uid;
    const bytes = messageBytes(plen, 0);
    if (!inRun || target !== core.runTargets[0] || uid !== core.runUid
      || core.runCount + 1 > core.runHeadCount || core.runBytes + bytes > core.runHeadBytes) {
      core.flushRun();
      this.receipts.syncPeer(target);
      core.runBegin(RUN_UNICAST, uid);
      core.runAdd(target);
      core.runLimit();
      if (core.runHeadCount < 1 || core.runHeadBytes < bytes) {
        core.flushRun();
        return -1;
      }
    }
    core.runCount++;
    core.runBytes += bytes;
    this.deliver(sender, target, node, ++core.seq, false, (w << 2) + idsBytes, plen, bytes, 0, 0);
    return 0;
  }

  /**
   * The next record of the sender whose unicast run is open, taken without the general
   * dispatch when it is one more of the same: an OP_SEND (post or send, without
   * partial or wait) to the run's destination id, without handles, well framed, from a
   * sender with no refused post pending, a descriptor tail that has not moved (else
   * dispatch syncs its receipts first, and judges the tail) and room for a verdict
   * (dispatch would stall it), to a receiver other than
   * itself (whose receipts a send syncs), within the run's headroom. Then it is delivered and acked as dispatch would, and true is
   * returned; else nothing changes and the caller dispatches the record as ever, which
   * gives any verdict. `w`: the record body's first word; `len`: its bytes.
   */
  continueUnicastRun(sender: PeerState, w: number, len: number): boolean {
    const core = this.core;
    const i32 = sender.out.i32;
    const flags = i32[w + 1];
    const plen = i32[w + 4] >>> 0;
    // One destination and no handles: the ids take 4 * (SEND_HEADER_WORDS + 1) bytes, padded to 8.
    const idsBytes = align8(4 * (SEND_HEADER_WORDS + 1));
    if (len < idsBytes || (flags & (SEND_FLAG_PARTIAL | SEND_FLAG_WAIT)) !== 0 || i32[w + 2] !== 1 || i32[w + 3] !== 0
      || i32[w + SEND_HEADER_WORDS] >>> 0 !== this.runUniId || plen > core.config.maxMessageBytes || idsBytes + plen > len
      || sender.streamCode !== 0 || (Atomics.load(sender.desc.ctl, RING_TAIL) >>> 0) !== sender.syncedTail
      || sender.verdictFree < 1) return false;
    const node = this.runUniNode!;
    const target = node.owner;
    const bytes = messageBytes(plen, 0);
    if (target === sender || core.runCount + 1 > core.runHeadCount || core.runBytes + bytes > core.runHeadBytes) return false;
    core.runCount++;
    core.runBytes += bytes;
    this.txTag = flags & TAG_MASK;
    this.deliver(sender, target, node, ++core.seq, false, (w << 2) + idsBytes, plen, bytes, 0, 0);
    this.verdicts.ack(sender, i32[w] >>> 0);
    return true;
  }

  /**
   * Quota check of every accepted destination up to `last` (all of them when -1), syncing
   * receipts first when it fails, so that a refusal is never caused by stale numbers.
   */
  checkDestinations(senderUid: number, h: number, bytes: number, last: number): boolean {
    const core = this.core;
    const end = last >= 0 ? last : this.handles.txNodes.length - 1;
    for (let attempt = 0; attempt < 2; attempt++) {
      const cs = core.charges;
      cs.reset(senderUid);
      for (let i = 0; i <= end; i++) {
        if (!this.txAccepted[i]) continue;
        const target = this.handles.txNodes[i].owner;
        if (attempt === 0) this.receipts.syncPeer(target);
        cs.add(target.user.ledger, 1, h, bytes);
        cs.add(target.ledger, 1, h, bytes);
      }
      const refused = cs.check();
      if (refused === null) return true;
      if (attempt === 0) {
        // Receipts at the user's other peers may not be accounted yet; an exact answer needs them.
        const user = core.users.peek(refused.ledger.owner);
        if (user !== undefined) for (const p of user.peers) this.receipts.syncPeer(p);
        continue;
      }
      core.fail(E_DQUOT, 0, refused.resource, refused.ledger.owner);
    }
    return false;
  }

  rebuildCharges(senderUid: number, h: number, bytes: number, ndest: number): void {
    const cs = this.core.charges;
    cs.reset(senderUid);
    for (let i = 0; i < ndest; i++) {
      if (!this.txAccepted[i]) continue;
      const target = this.handles.txNodes[i].owner;
      cs.add(target.user.ledger, 1, h, bytes);
      cs.add(target.ledger, 1, h, bytes);
    }
  }

  /**
   * The transaction's handles, installed in `target`'s table and written as its ids from
   * word `hw` of the slice (a destroyed node's as INVALID_HANDLE); returns those installed.
   * Apart from deliver(), which stays small enough to be inlined where no handles go.
   */
  installHandles(target: PeerState, i32: Int32Array, hw: number, nh: number): Handle[] {
    const list: Handle[] = [];
    for (let i = 0; i < nh; i++) {
      const node2 = this.txHandles[i].node;
      if (node2.destroyed) {
        i32[hw++] = INVALID_HANDLE;
        continue;
      }
      const th = this.handles.install(target, node2);
      th.refsInFlight++;
      list.push(th);
      i32[hw++] = th.id;
    }
    return list;
  }

  /** Write one data message into `target`'s pool and queue its descriptor. */
  deliver(
    sender: PeerState, target: PeerState, node: BusNode, seq: number, cont: boolean,
    payloadOff: number, plen: number, bytes: number, handlesCharged: number, nh: number,
  ): void {
    const pool = target.pool;
    const slot = pool.alloc(bytes);
    if (slot < 0) throw new Error(`internal: pool of peer ${target.id} full although accounting allowed ${bytes} bytes`);
    const offset = pool.placedOffset;
    const seg = pool.placedSegment!;
    const at = offset + seg.delta;
    copyPayload(sender, payloadOff, seg, at, plen);
    const list = nh > 0 ? this.installHandles(target, seg.i32, (at + ((plen + 3) & ~3)) >> 2, nh) : null;
    const kindWord = KIND_DATA | (cont ? DESC_CONTINUE : 0) | (nh << DESC_NHANDLES_SHIFT) | this.txTag;
    countSent(sender, bytes);
    this.descriptors.queueDescriptor(target, kindWord, node.ownerHandle.id, seq, sender.uid, offset, plen, slot, handlesCharged, list, null);
  }
}
/** Stable insertion sort of destination indices by owning peer (few destinations). */
function sortByOwner(order: number[], nodes: BusNode[]): void {
  for (let i = 1; i < order.length; i++) {
    const v = order[i];
    const key = nodes[v].owner.id;
    let j = i - 1;
    while (j >= 0 && nodes[order[j]].owner.id > key) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = v;
  }
}

/** Payloads up to this size are copied word by word: cheaper than a native call. */
const WORD_COPY_MAX_BYTES = 256;

/**
 * Copy `n` payload bytes from the sender's OUT ring (byte `srcOff`) into a pool slice
 * (byte `dstOff` of `seg`). Small ones go by 64-bit words: BigInt64Array loads and stores
 * that the optimizing compiler keeps as plain 64-bit moves (no BigInt is made), bit for
 * bit, half the moves of 32-bit words; a Float64Array would do as well in speed but may
 * rewrite NaN bit patterns. The payload starts 8-aligned in its record (which is padded
 * to 8), and the slice holds at least align8(n) bytes, so whole words are safe to read
 * and write; any handle ids are written after the copy. Larger ones (and any not
 * 8-aligned, which the layout does not make) go by Buffer.copy.
 */
function copyPayload(sender: PeerState, srcOff: number, seg: PoolSegment, dstOff: number, n: number): void {
  if (n === 0) return;
  if (n <= WORD_COPY_MAX_BYTES && ((srcOff | dstOff) & 7) === 0) {
    const src = sender.out64, dst = seg.b64;
    const s = srcOff >> 3;
    const d = dstOff >> 3;
    const words = (n + 7) >> 3;
    for (let i = 0; i < words; i++) dst[d + i] = src[s + i];
    return;
  }
  sender.outBuf.copy(seg.buf, dstOff, srcOff, srcOff + n);
}
