/*
 * Handles: nodes and handles (bus1 node.c, handle.c; coordinator thread only).
 *
 * A node is owned by one peer; a handle is one peer's reference to a node, with a count
 * of references (`refs`, of which `refsInFlight` arrived in messages not yet received).
 * Every reference is charged to its holder as one handle. node-destroy and node-release
 * notifications are transactions in the global order (they take a `seq`).
 *
 * Invariants: a node's owner holds its ownerHandle while the node lives; node-release
 * is queued to the owner exactly when the last reference besides the owner's first one
 * goes, and withdrawn (PeerState.cancelRelease) when a new one comes before it is read.
 */

import { KIND_NODE_DESTROY, KIND_NODE_RELEASE, DESC_CONTINUE } from '../../shared/layout.js';
import { BusError } from '../errors.js';
import { BusNode as NewNode, Handle as NewHandle } from './nodes.js';
import type { PeerState, BusNode, Handle } from './peer-state.js';
import { E_NXIO, E_NOTUNIQ, E_BUSY, E_REMOTE, E_STALE, clearList, type CoordinatorCore } from './core.js';
import type { Receipts } from './receipts.js';
import type { Descriptors } from './descriptors.js';

export class Handles {
  /** Scratch of destroyNodesRequest (reused: no allocation per request). */
  readonly txNodes: BusNode[] = [];

  constructor(readonly core: CoordinatorCore, readonly receipts: Receipts, readonly descriptors: Descriptors) {}

  /** bus.createNode(ticket): a node owned by `peer`; returns the owner's handle id. */
  ownerCreateNode(peer: PeerState): number {
    const core = this.core;
    const code = this.createNode(peer);
    if (code !== 0) throw core.lastError('createNode');
    return core.errDetail;
  }

  /** bus1 HANDLE_TRANSFER: copy `from`'s handle to `to`; returns `to`'s id. */
  transferHandle(from: PeerState, handleId: number, to: PeerState): number {
    this.receipts.syncPeer(from);
    this.receipts.syncPeer(to);
    const h = from.handles.get(handleId);
    if (h === undefined || h.refs - h.refsInFlight <= 0) {
      throw new BusError('ENXIO', `transferHandle: handle ${handleId} is not known to the source peer`);
    }
    if (h.node.destroyed) {
      throw new BusError('ESHUTDOWN', `transferHandle: the node behind handle ${handleId} is destroyed`);
    }
    const ok = this.receipts.checkOrSync(to, from.uid, 0, 1, 0);
    if (!ok) throw this.core.lastError('transferHandle');
    to.user.ledger.chargeCommitted(from.uid, 0, 1, 0);
    to.ledger.chargeCommitted(from.uid, 0, 1, 0);
    const th = this.install(to, h.node);
    return th.id;
  }

  /** Give `peer` one more reference to `node` (creating its handle if needed). Charges nothing. */
  install(peer: PeerState, node: BusNode): Handle {
    let h = node.holders.get(peer);
    if (h === undefined) {
      h = new NewHandle(peer.nextHandleId++, node, peer);
      node.holders.set(peer, h);
      peer.handles.set(h.id, h);
      if (peer !== node.owner) node.owner.cancelRelease(node);
    } else if (peer === node.owner) {
      // An extra reference of the owner to its own node withdraws an unread node-release too.
      node.owner.cancelRelease(node);
    }
    h.refs++;
    return h;
  }

  /** Create a node owned by `peer`; on success errDetail holds the owner's handle id. */
  createNode(peer: PeerState): number {
    const core = this.core;
    if (!this.receipts.checkOrSync(peer, peer.uid, 0, 1, 0)) return core.errCode;
    peer.user.ledger.chargeCommitted(peer.uid, 0, 1, 0);
    peer.ledger.chargeCommitted(peer.uid, 0, 1, 0);
    const node = new NewNode(peer);
    const h = this.install(peer, node);
    node.ownerHandle = h;
    peer.ownedNodes.add(node);
    core.errDetail = h.id;
    return 0;
  }

  releaseHandle(peer: PeerState, id: number): number {
    const core = this.core;
    const h = peer.handles.get(id);
    if (h === undefined || h.refs - h.refsInFlight <= 0) return core.fail(E_NXIO, id);
    const node = h.node;
    // The owner's references carried in messages it has not received yet are not its own yet.
    if (!node.destroyed && node.owner === peer && h.refs - h.refsInFlight === 1) return core.fail(E_BUSY, id);
    h.refs--;
    peer.user.ledger.release(0, 1, 0);
    peer.ledger.release(0, 1, 0);
    if (h.refs === 0) this.dropHandle(peer, h);
    else if (peer === node.owner) this.notifyIfReleased(node);
    return 0;
  }

  /**
   * node-release (bus1): the node's references besides the owner's own first one (those of
   * other holders, and extra ones the owner took to its own node) are all gone. Each such
   * last release is one transaction in the global order.
   */
  notifyIfReleased(node: BusNode): void {
    const owner = node.owner;
    if (node.destroyed || !owner.open || node.foreignHolders !== 0 || node.ownerHandle.refs !== 1) return;
    const seq = ++this.core.seq;
    this.descriptors.queueDescriptor(owner, KIND_NODE_RELEASE, node.ownerHandle.id, seq, owner.uid, 0, 0, -1, 0, null, node);
  }

  /** Remove a handle with no references left; tell the owner if it was the last foreign holder. */
  dropHandle(peer: PeerState, h: Handle): void {
    const node = h.node;
    peer.handles.delete(h.id);
    node.holders.delete(peer);
    if (peer !== node.owner) this.notifyIfReleased(node);
  }

  destroyNodesRequest(peer: PeerState, w: number, n: number): number {
    const core = this.core;
    const i32 = peer.out.i32;
    const epoch = ++core.epoch;
    const nodes = this.txNodes;
    clearList(nodes);
    for (let i = 0; i < n; i++) {
      const id = i32[w + i] >>> 0;
      const h = peer.handles.get(id);
      if (h === undefined || h.refs - h.refsInFlight <= 0) return core.fail(E_NXIO, id);
      if (h.node.owner !== peer) return core.fail(E_REMOTE, id);
      if (h.node.destroyed) return core.fail(E_STALE, id);
      if (h.node.txMark === epoch) return core.fail(E_NOTUNIQ, id);
      h.node.txMark = epoch;
      nodes.push(h.node);
    }
    this.destroyNodes(nodes);
    return 0;
  }

  /** One transaction: every holder of every node (owner included) learns of the destruction. */
  destroyNodes(nodes: BusNode[]): void {
    const core = this.core;
    if (nodes.length === 0) return;
    const seq = ++core.seq;
    // Group notifications per holder so that `continue` links a holder's consecutive ones.
    const perHolder = new Map<PeerState, number[]>();
    for (const node of nodes) {
      node.destroyed = true;
      node.owner.cancelRelease(node);
      node.owner.ownedNodes.delete(node);
      for (const [holder, h] of node.holders) {
        if (!holder.open) continue;
        let ids = perHolder.get(holder);
        if (ids === undefined) perHolder.set(holder, ids = []);
        ids.push(h.id);
      }
    }
    for (const [holder, ids] of perHolder) {
      for (let i = 0; i < ids.length; i++) {
        const kind = KIND_NODE_DESTROY | (i + 1 < ids.length ? DESC_CONTINUE : 0);
        this.descriptors.queueDescriptor(holder, kind, ids[i], seq, nodes[0].owner.uid, 0, 0, -1, 0, null, null);
      }
    }
    core.publishDirty();
  }
}
