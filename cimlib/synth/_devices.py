"""Tellers and terminals of transactions, derived without the generator's random stream.

Every value here comes from integer hashing of indices (branch, account, day, amount), never from the
simulation's ``numpy`` generator, so adding these columns left every other generated value of the bank
byte-identical.

- A COUNTER transaction gets a teller (role TELLER) of the account's branch; a branch without tellers
  borrows from its county, then from the whole bank.
- An ATM transaction gets one of the account's branch's own ATMs: each branch has 1-3 ATMs (from the
  branch index), terminal id ``ATM`` + branch code + 2-digit sequence (``ATM10100101``).
- Planted under-used ATMs: in about every fifth branch with two or more ATMs, the last ATM gets only
  ``UNDERUSED_SHARE`` of the branch's ATM transactions (``_answers/devices.csv``, kind UNDERUSED).
- POS transactions keep ``terminal_id`` NULL: POS terminals belong to merchants and their acquirers,
  not to the bank's own device estate. Other channels have neither a teller nor a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cimlib.synth import _arrow as A

UNDERUSED_SHARE = 0.03
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(*parts: np.ndarray | int) -> np.ndarray:
    """A 64-bit hash (splitmix64 finaliser, chained) of equal-length integer arrays or scalars.

    Parameters
    ----------
    *parts : array or int
        Non-negative integers; scalars broadcast.

    Returns
    -------
    numpy.ndarray
        ``uint64`` hashes, uniform over 64 bits for distinct inputs.
    """
    arrays = [np.atleast_1d(np.asarray(p, dtype=np.int64)).astype(np.uint64) for p in parts]
    n = max(len(a) for a in arrays)
    z = np.zeros(n, np.uint64)
    with np.errstate(over="ignore"):
        for a in arrays:
            z = z + _GOLDEN + a
            z = (z ^ (z >> np.uint64(30))) * _M1
            z = (z ^ (z >> np.uint64(27))) * _M2
            z = z ^ (z >> np.uint64(31))
    return z


def unit(h: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from 64-bit hashes (their top 53 bits)."""
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


@dataclass
class Devices:
    """The tellers and ATMs of each branch (branch index ``b`` as in ``World.br_code``)."""

    teller_pool: np.ndarray  # staff indices, grouped by branch
    teller_start: np.ndarray  # per branch: offset into teller_pool
    teller_len: np.ndarray  # per branch: number of tellers to pick from (>= 1)
    n_atm: np.ndarray  # per branch: 1-3
    atm_start: np.ndarray  # per branch: offset into atm_ids
    atm_ids: pa.Array  # terminal ids, grouped by branch
    underused: np.ndarray  # per branch: its last ATM is planted under-used

    def planted(self, br_codes: pa.Array) -> list[tuple[str, str, str]]:
        """``(terminal_id, org_code, "UNDERUSED")`` of the planted under-used ATMs, by terminal id."""
        rows = []
        codes = br_codes.to_pylist()
        ids = self.atm_ids.to_pylist()
        for b in np.flatnonzero(self.underused):
            rows.append((ids[self.atm_start[b] + self.n_atm[b] - 1], codes[b], "UNDERUSED"))
        return sorted(rows)


def build_devices(
    br_code: np.ndarray, br_county: np.ndarray, staff_branch: np.ndarray, staff_role: pa.Array
) -> Devices:
    """Tellers and ATMs per branch, from indices only.

    Parameters
    ----------
    br_code : numpy.ndarray
        Branch org codes (6-digit integers), per branch index.
    br_county : numpy.ndarray
        County index per branch.
    staff_branch : numpy.ndarray
        Branch index per staff member.
    staff_role : pyarrow.Array
        Role code per staff member.

    Returns
    -------
    Devices
        The device estate.
    """
    nb = len(br_code)
    is_teller = np.asarray(staff_role.to_pylist()) == "TELLER"
    all_tellers = np.flatnonzero(is_teller)
    if not len(all_tellers):
        raise ValueError("the synthetic bank has no tellers")
    pools: list[np.ndarray] = []
    for b in range(nb):
        own = np.flatnonzero(is_teller & (staff_branch == b))
        if not len(own):
            county = np.flatnonzero(br_county == br_county[b])
            own = np.flatnonzero(is_teller & np.isin(staff_branch, county))
        pools.append(own if len(own) else all_tellers)
    teller_len = np.array([len(p) for p in pools], np.int64)
    teller_start = np.r_[0, np.cumsum(teller_len)[:-1]].astype(np.int64)
    b_idx = np.arange(nb)
    n_atm = 1 + (mix(b_idx, 4101) % np.uint64(3)).astype(np.int64)
    underused = (n_atm >= 2) & ((mix(b_idx, 4102) % np.uint64(5)) == 0)
    atm_start = np.r_[0, np.cumsum(n_atm)[:-1]].astype(np.int64)
    owner = np.repeat(b_idx, n_atm)
    seq = np.arange(int(n_atm.sum())) - atm_start[owner] + 1
    atm_ids = A.ascii_strings(
        np.hstack(
            [
                np.broadcast_to(np.frombuffer(b"ATM", np.uint8), (len(owner), 3)),
                A.digits(br_code[owner], 6),
                A.digits(seq, 2),
            ]
        )
    )
    return Devices(
        teller_pool=np.concatenate(pools),
        teller_start=teller_start,
        teller_len=teller_len,
        n_atm=n_atm,
        atm_start=atm_start,
        atm_ids=atm_ids,
        underused=underused,
    )


def assign(
    dev: Devices,
    staff_no: pa.Array,
    branch: np.ndarray,
    acc: np.ndarray,
    day: np.ndarray,
    amount: np.ndarray,
    is_counter: np.ndarray,
    is_atm: np.ndarray,
) -> tuple[pa.Array, pa.Array]:
    """``teller_no`` and ``terminal_id`` of transactions (NULL where the channel has none).

    Parameters
    ----------
    dev : Devices
        The device estate.
    staff_no : pyarrow.Array
        Employee numbers per staff index.
    branch, acc, day, amount : numpy.ndarray
        Per transaction: the account's branch index, the account index, the day number and the amount
        in cents (the hash inputs).
    is_counter, is_atm : numpy.ndarray
        Per transaction: booleans of the channel.

    Returns
    -------
    tuple of pyarrow.Array
        ``(teller_no, terminal_id)``.
    """
    h = mix(acc, day, amount)
    pick = (h % np.uint64(1 << 30)).astype(np.int64)
    teller = dev.teller_pool[dev.teller_start[branch] + pick % dev.teller_len[branch]]
    n = dev.n_atm[branch]
    planted = dev.underused[branch]
    u = unit(mix(h, 4103))
    # a planted branch: the last ATM with probability UNDERUSED_SHARE, else one of the others
    k = np.where(
        planted,
        np.where(u < UNDERUSED_SHARE, n - 1, pick % np.maximum(n - 1, 1)),
        pick % n,
    )
    atm = dev.atm_start[branch] + k
    teller_no = staff_no.take(pa.array(teller, mask=~is_counter))
    terminal_id = dev.atm_ids.take(pa.array(atm, mask=~is_atm))
    return teller_no, terminal_id
