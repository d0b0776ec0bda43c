/*
 * The quota rule (semantics.md 5.3): may a foreign sending uid put `amount` more of one
 * resource in flight to a receiver?
 *
 * Pure and total: no state, no allocation, never throws. Any input that is not a
 * non-negative safe integer is refused, so a garbage or hostile amount can only ever
 * produce EDQUOT. Called by the coordinator thread only, through Ledger.check.
 *
 * Rules, with R = what the receiver has remaining, s = the sender's in-flight share,
 * c = the amount asked for, n = foreign uids holding a share counting this sender:
 *   half       (bus1, the default)  s + 2c <= R          "half of what nobody else uses"
 *   polynomial (dbus-broker)        (s + c)(n + 1) - s <= R
 *
 * Exactness. Inputs are safe integers (< 2^53; anything else is refused), on which
 * doubles are exact, so the only danger is an intermediate that leaves that range and
 * gets rounded: the naive (s + c)(n + 1) - s can round an exact 2^53 down to R and wrongly
 * allow (a test shows one). So every comparison is arranged to be exact:
 *   half:       doubling never rounds, so 2c is exact; once 2c <= R, R - 2c is an
 *               exact non-negative difference and s <= R - 2c decides exactly.
 *   polynomial: (s + c)(n + 1) - s is rewritten as s*n + c*(n + 1), a sum of
 *               non-negative terms. Each product is either exact (< 2^53) or, if its
 *               true value is >= 2^53, rounds to a double >= 2^53 > R (rounding is
 *               monotone and 2^53 is representable), so "product > R" is always the
 *               right answer. Once s*n <= R, R - s*n is an exact non-negative
 *               difference of safe integers, and c*(n + 1) <= R - s*n decides exactly.
 */

export type QuotaRule = 'half' | 'polynomial';

export const QUOTA_RULES: readonly QuotaRule[] = ['half', 'polynomial'];

export const DEFAULT_QUOTA_RULE: QuotaRule = 'half';

/** A non-negative integer a double holds exactly; everything else is refused. */
function isSafeCount(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

/**
 * May `sender` (a foreign uid) charge `amount` of one resource, given the receiver's
 * `remaining` R, the sender's current in-flight `share` s, and `sharers` n = number of
 * foreign uids holding a nonzero share of this resource on this receiver counting this
 * sender too (only used by 'polynomial')?
 *   half: s + 2c <= R.   polynomial: (s + c)(n + 1) - s <= R.
 * Amount 0 is always allowed (as in dbus-broker's user_charge): charging nothing consumes
 * nothing, and a message without handles must not be refused on its handle count just
 * because the sender's share of handles is already above half of what is left.
 */
export function quotaAllows(
  rule: QuotaRule,
  remaining: number,
  share: number,
  amount: number,
  sharers: number,
): boolean {
  if (!isSafeCount(amount)) return false;
  if (amount === 0) return true;
  if (!isSafeCount(remaining) || !isSafeCount(share)) return false;
  // Both left sides are >= c, so this only answers early; exactness does not rest on it.
  if (amount > remaining) return false;
  if (rule === 'half') {
    const doubled = 2 * amount;
    if (doubled > remaining) return false;
    return share <= remaining - doubled;
  }
  if (rule === 'polynomial') {
    if (!isSafeCount(sharers)) return false;
    const shareTerm = share * sharers;
    if (shareTerm > remaining) return false;
    return amount * (sharers + 1) <= remaining - shareTerm;
  }
  return false;
}

/** The receiving user charging itself: no quota, only amount <= remaining. */
export function selfAllows(remaining: number, amount: number): boolean {
  if (!isSafeCount(amount)) return false;
  if (amount === 0) return true;
  if (!isSafeCount(remaining)) return false;
  return amount <= remaining;
}
