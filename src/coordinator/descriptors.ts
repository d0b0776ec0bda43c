/*
 * Descriptors: publishing into a receiver's IN ring (coordinator thread only).
 *
 * queueDescriptor writes a descriptor into the receiver's ring, or, while the ring is
 * full, holds it back in the peer's `overflow` queue (in order; nothing passes it) and
 * polls the peer so that flushOverflow moves it in as the peer reads. A peer whose
 * held-back descriptors exceed OVERFLOW_FACTOR times its ring is condemned. Every
 * descriptor gets a FIFO entry (PeerState) with what it charged and to whom; the head
 * store that publishes them happens once per batch (CoordinatorCore.publishDirty).
 */

import { D_KIND, D_DEST, D_OFFSET, D_BYTES, D_SEQ_F64, D_UID_F64 } from '../../shared/layout.js';
import type { PeerState, PendingDescriptor, BusNode, Handle } from './peer-state.js';
import type { CoordinatorCore } from './core.js';
import type { Bells } from './bells.js';
import type { Receipts } from './receipts.js';

/** A peer whose held-back descriptors exceed this many times its ring is cut off. */
const OVERFLOW_FACTOR = 4;

export class Descriptors {
  constructor(readonly core: CoordinatorCore, readonly receipts: Receipts, readonly bells: Bells) {}

  queueDescriptor(
    target: PeerState, kindWord: number, dest: number, seq: number, uid: number, offset: number, bytes: number,
    slot: number, handlesCharged: number, list: Handle[] | null, node: BusNode | null,
  ): void {
    const core = this.core;
    if (target.overflow.length === 0) {
      const pos = target.desc.position;
      const at = target.desc.reserve();
      if (at >= 0) {
        this.writeDescriptor(target, pos, at, kindWord, dest, seq, uid, offset, bytes, slot, handlesCharged, list);
        if (node !== null) node.releasePosition = pos;
        core.markDirty(target);
        return;
      }
    }
    const d: PendingDescriptor = {
      kindWord, destination: dest, seq, senderUid: uid, offset, bytes, slot, handlesCharged, handleList: list, node,
    };
    target.overflow.push(d);
    this.bells.poll(target);
    if (node !== null) node.releaseOverflow = d;
    if (target.overflow.length > OVERFLOW_FACTOR * target.desc.slots) core.condemned.push(target);
  }

  writeDescriptor(
    target: PeerState, pos: number, at: number, kindWord: number, dest: number, seq: number, uid: number,
    offset: number, bytes: number, slot: number, handlesCharged: number, list: Handle[] | null,
  ): void {
    const d = target.desc;
    d.i32[at + D_DEST] = dest;
    d.f64[(at >> 1) + D_SEQ_F64] = seq;
    d.f64[(at >> 1) + D_UID_F64] = uid;
    d.i32[at + D_OFFSET] = offset;
    d.i32[at + D_BYTES] = bytes;
    d.i32[at + D_KIND] = kindWord;
    // The FIFO is full: receipts not yet accounted would be overwritten, so account them
    // first, then grow it if it is still full (ensureFifo would return at once otherwise).
    if (((pos - target.syncedTail) >>> 0) >= target.fifoCapacity) {
      this.receipts.syncPeer(target);
      target.ensureFifo(pos);
    }
    const i = target.fifoIndex(pos);
    target.fifoUid[i] = uid;
    target.fifoSlot[i] = slot;
    target.fifoHandles[i] = handlesCharged;
    if (list !== null) target.fifoHandleList.set(pos, list);
    target.descDirty = true;
  }

  flushOverflow(peer: PeerState): number {
    const core = this.core;
    let moved = 0;
    const q = peer.overflow;
    while (moved < q.length) {
      const pos = peer.desc.position;
      const at = peer.desc.reserve();
      if (at < 0) break;
      const d = q[moved++];
      this.writeDescriptor(peer, pos, at, d.kindWord, d.destination, d.seq, d.senderUid, d.offset, d.bytes,
        d.slot, d.handlesCharged, d.handleList);
      if (d.node !== null && d.node.releaseOverflow === d) {
        d.node.releaseOverflow = null;
        d.node.releasePosition = pos;
      }
    }
    if (moved > 0) {
      q.splice(0, moved);
      core.markDirty(peer);
      core.publishDirty();
    }
    return moved;
  }
}
