"""The memo the families share work through: entries live as long as their object, a Dask worker's
memo is its own process's, and the keys of a pickled context hit on every copy of it."""

from __future__ import annotations

import gc
import pickle
import weakref

from csmetrics.memo import Memo, ProcessMemo, identity_token, process_memo
from csmetrics.metrics import _billing


class Owner:
    pass


class Result:
    pass


def test_an_entry_is_made_once_shared_and_freed_with_its_object():
    memo = Memo(slots=4)
    owner, made = Owner(), []

    def make():
        made.append(1)
        return Result()

    first = memo.get(owner, ("k",), make)
    assert memo.get(owner, ("k",), make) is first
    assert (len(made), memo.made, memo.hits) == (1, 1, 1)
    assert memo.get(owner, ("other",), make) is not first  # another key is another entry
    kept = weakref.ref(first)
    del first, owner
    gc.collect()
    memo.get(Owner(), ("k",), make)  # the next use drops the entries of the freed object
    gc.collect()
    assert kept() is None


def test_the_oldest_entries_go_beyond_the_slots():
    memo, owners = Memo(slots=2), [Owner() for _ in range(3)]
    for owner in owners:
        memo.get(owner, ("k",), Result)
    memo.get(owners[0], ("k",), Result)
    assert (memo.made, memo.hits) == (4, 0)  # the first was dropped by the third
    memo.get(owners[2], ("k",), Result)
    assert memo.hits == 1


def test_a_process_memo_arrives_as_the_memo_of_the_process_it_is_unpickled_in():
    assert pickle.loads(pickle.dumps(ProcessMemo())) is process_memo()
    assert process_memo() is process_memo()


def test_identity_tokens_name_an_object_and_survive_pickling_in_a_context(sample_tables):
    fx = sample_tables["fx"]
    assert identity_token(fx) == identity_token(fx) != identity_token(fx.copy())
    assert identity_token(None) is None
    billing, context = _billing.prepare(sample_tables["billing"], fx=fx)
    copy = pickle.loads(pickle.dumps(context))
    assert copy.fx is not context.fx and copy.fx_key == context.fx_key
    memo = Memo(slots=4)
    first = _billing.arrays_and_ledger(billing, context, memo)
    assert _billing.arrays_and_ledger(billing, copy, memo) is first  # as on a worker with two copies
    assert (memo.made, memo.hits) == (1, 1)
    _, other_fx = _billing.prepare(sample_tables["billing"], fx=fx.copy())
    assert _billing.arrays_and_ledger(billing, other_fx, memo) is not first

