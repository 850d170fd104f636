"""input-output-mismatch: what the layers and the loss received. A run that crashed
before training is judged from its tolerant re-run (each mismatch adapted and counted)."""
from proctor_harness.gym_judge import trained


def _targets_fit(call):
    if "int" in call["target_dtype"]:
        return len(call["target_shape"]) == len(call["input_shape"]) - 1  # class indices
    # probability targets: rows of non-negative weights summing to 1
    return (call["target_shape"] == call["input_shape"] and call.get("target_min", -1) >= 0
            and abs(call.get("target_row_sum_max", 0) - 1) < 1e-3)


def judge(obs):
    t = obs.get("tolerant")
    if t is not None:
        # Only a re-run that got through by adapting mismatches, and trained, says which
        # were fixed: if it still fails, or adapted nothing, the crash was not one of the
        # four bugs; if it did not train, one adapted batch is all it showed.
        ok = not t["crashed"] and t.get("adapted", 0) > 0 and trained(t.get("training") or {"steps": 0})
        bugs = {
            "image_size": ok and t["linear_forwards"] > 0 and t["features"] == 0,
            "channel_order": ok and t["conv_forwards"] > 0 and t["channels_last"] == 0,
            "label_encoding": ok and t["loss_calls"] > 0 and t["one_hot_target"] == 0,
            "batch_dim": ok and t["eval_forwards"] > 0 and t["unbatched"] == 0,
        }
    else:
        ran = trained(obs)
        losses = [c for c in obs["loss_calls"] if "cross_entropy" in c["op"] or "nll" in c["op"]]
        # what the convolutions received (nn.Conv2d or F.conv2d), in evaluation too
        convs = obs["conv_inputs"]
        dims = set(convs["training"]) | set(convs["eval"])
        bugs = {
            "image_size": ran,
            "channel_order": ran,
            # a cross-entropy written by hand (log_softmax times float targets) calls no
            # loss op: the one-hot encoding is wrong only for the loss ops that got it
            "label_encoding": ran and all(_targets_fit(c) for c in losses),
            # validation one image at a time, as deployed: every evaluation forward returned
            # one prediction per sample, batched [1, C, H, W] or unbatched (torch's convs take
            # [C, H, W]; the bug is the flatten that then mixes the channels into the batch).
            # Convolutions seen in no forward at all ran in TorchScript (`torch.jit.script`),
            # where ops are not observed: the output rows per sample are the evidence.
            "batch_dim": ((bool(convs["eval"]) or not dims) and dims <= {"3", "4"}
                          and obs["eval_forwards"] > 0 and obs["eval_per_sample"] == obs["eval_forwards"]),
        }
    return {"bugs": bugs, "metrics": {}}
