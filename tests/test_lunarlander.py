"""LunarLander-v3 (Box2D) beside CartPole and Acrobot (cropkit.tasks.control): the same REINFORCE path under the smoke
profile."""
import math
import warnings

import cropkit as ck


def test_earlycrop_u_runs_on_lunarlander(one_thread):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the detector is forced at the smoke cap
        result = ck.run("earlycrop-u", data="lunarlander", model="policy", profile="smoke", cache=False,
                        progress=False)
    assert result.dataset == "lunarlander" and result.metric == "return" and math.isfinite(result.test_metric)
    assert abs(result.weight_sparsity - 0.9) <= 0.01 and result.prune_epoch is not None
    data = ck.data.load("lunarlander", batch_size=2)
    assert data.input_shape == (8,) and data.num_classes == 4 and data.test.env == "LunarLander-v3"
