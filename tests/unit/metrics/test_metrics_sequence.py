"""Tests for tensorfab.metrics.sequence: entity-level (CoNLL) and token-level NER scores."""

import json

import pytest

from tensorfab.metrics import entity_scores, sequence_report_markdown, token_scores

# Two sentences. Entities, (type, start, end) per sentence:
#   true: s0 PER(0,1) LOC(3,3) | s1 ORG(0,0)          -> 3 entities
#   pred: s0 PER(0,1) MISC(3,3) | s1 ORG(0,1)         -> 3 entities
# PER matches (tp); LOC is missed (fn); MISC is spurious (fp); ORG has the right type but its end
# differs (1 vs 0), so it counts as fp AND fn. tp = 1, fp = 2, fn = 2.
TRUE = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
PRED = [["B-PER", "I-PER", "O", "B-MISC"], ["B-ORG", "I-ORG"]]
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "B-ORG", "I-ORG", "B-MISC"]


def test_entity_scores_hand_computed():
    scores = entity_scores(TRUE, PRED)
    # micro: P = tp / (tp + fp) = 1/3, R = tp / (tp + fn) = 1/3, F1 = 2PR / (P + R) = 1/3
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    # per type (types from either side, sorted); 0/0 counts as 0.0
    #   LOC:  P 0/0 = 0, R 0/1 = 0, F1 0, support 1
    #   MISC: P 0/1 = 0, R 0/0 = 0, F1 0, support 0
    #   ORG:  P 0/1 = 0, R 0/1 = 0, F1 0, support 1
    #   PER:  P 1/1 = 1, R 1/1 = 1, F1 1, support 1
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert scores["per_type"] == {
        "LOC": {**zero, "support": 1},
        "MISC": {**zero, "support": 0},
        "ORG": {**zero, "support": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }
    assert list(scores["per_type"]) == ["LOC", "MISC", "ORG", "PER"]
    # macro F1 = (0 + 0 + 0 + 1) / 4 types = 0.25
    assert scores["macro_f1"] == pytest.approx(0.25)
    # weighted F1 = (0*1 + 0*0 + 0*1 + 1*1) / (1 + 0 + 1 + 1) = 1/3
    assert scores["weighted_f1"] == pytest.approx(1 / 3)
    assert scores["n_sentences"] == 2
    assert scores["n_entities_true"] == 3
    assert scores["n_entities_pred"] == 3


def test_entity_scores_perfect_prediction():
    tags = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"], ["O", "B-ORG"], []]
    scores = entity_scores(tags, [list(sentence) for sentence in tags])
    for key in ("precision", "recall", "f1", "macro_f1", "weighted_f1"):
        assert scores[key] == 1.0, key
    assert {name: row["support"] for name, row in scores["per_type"].items()} == {
        "LOC": 1,
        "ORG": 1,
        "PER": 1,
    }
    assert scores["n_sentences"] == 3
    assert scores["n_entities_true"] == scores["n_entities_pred"] == 3


@pytest.mark.parametrize(
    "pred",
    [
        ["B-PER", "I-PER", "O"],  # end too early: PER(0,1)
        ["O", "B-PER", "I-PER"],  # start too late: PER(1,2)
    ],
)
def test_partial_boundary_match_is_one_fp_and_one_fn(pred):
    true = [["B-PER", "I-PER", "I-PER"]]
    scores = entity_scores(true, [pred])
    # one true PER(0,2), one predicted PER of another span: tp 0, fp 1, fn 1 -> P = R = F1 = 0
    assert scores["n_entities_true"] == 1
    assert scores["n_entities_pred"] == 1
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.0
    assert scores["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_partial_overlap_with_a_match_elsewhere():
    # true PER(0,1), LOC(3,3); pred PER(0,0), LOC(3,3)
    # tp 1 (LOC), fp 1 (PER(0,0)), fn 1 (PER(0,1)): P = 1/2, R = 1/2, F1 = 1/2
    scores = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]])
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx(0.5)
    # macro F1 = (PER 0 + LOC 1) / 2 = 0.5
    assert scores["macro_f1"] == pytest.approx(0.5)


def test_leading_i_tag_begins_an_entity_like_conlleval():
    # seqeval's default mode (mode=None) chunks like conlleval: an I- tag after O begins an entity,
    # so pred [O I-PER] holds PER(1,1), an exact match of true [O B-PER]. (The strict IOB2 mode
    # would drop it and score 0.)
    scores = entity_scores([["O", "B-PER"]], [["O", "I-PER"]])
    assert scores["n_entities_pred"] == 1
    assert scores["precision"] == scores["recall"] == scores["f1"] == 1.0
    # the same with I- tags throughout (IOB1 style): [I-PER I-PER] is PER(0,1)
    scores = entity_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]])
    assert scores["f1"] == 1.0


def test_i_tag_of_another_type_begins_a_new_entity():
    # pred [B-LOC I-PER]: the type changes, so I-PER begins PER(1,1): LOC(0,0) + PER(1,1),
    # both exact matches of true [B-LOC B-PER]
    scores = entity_scores([["B-LOC", "B-PER"]], [["B-LOC", "I-PER"]])
    assert scores["n_entities_pred"] == 2
    assert scores["f1"] == 1.0


def test_entities_do_not_span_sentences():
    # [B-PER] then [I-PER] in the next sentence: two entities, not one PER(0,1)
    tags = [["B-PER"], ["I-PER"]]
    scores = entity_scores(tags, tags)
    assert scores["n_entities_true"] == scores["n_entities_pred"] == 2
    assert scores["per_type"]["PER"]["support"] == 2


def test_no_entities_anywhere_scores_zero():
    scores = entity_scores([["O", "O"], []], [["O", "O"], []])
    assert scores == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "macro_f1": 0.0,
        "weighted_f1": 0.0,
        "per_type": {},
        "n_sentences": 2,
        "n_entities_true": 0,
        "n_entities_pred": 0,
    }


def test_entity_scores_accept_tuples():
    scores = entity_scores([("B-PER", "O")], [("B-PER", "O")])
    assert scores["f1"] == 1.0


def test_token_scores_hand_computed():
    scores = token_scores(TRUE, PRED, TAGS)
    # flattened, 6 tokens:
    #   true B-PER I-PER O B-LOC  B-ORG O
    #   pred B-PER I-PER O B-MISC B-ORG I-ORG
    # correct at 0, 1, 2, 4: accuracy = micro F1 = 4/6 = 2/3
    assert scores["n"] == 6
    assert scores["accuracy"] == pytest.approx(2 / 3)
    assert scores["micro_f1"] == pytest.approx(2 / 3)
    per = scores["per_class"]
    assert list(per) == TAGS
    # O: true 2, predicted 1, tp 1 -> P 1/1 = 1, R 1/2, F1 = 2*1*0.5 / 1.5 = 2/3
    assert per["O"]["precision"] == pytest.approx(1.0)
    assert per["O"]["recall"] == pytest.approx(0.5)
    assert per["O"]["f1"] == pytest.approx(2 / 3)
    assert per["O"]["support"] == 2
    for tag in ("B-PER", "I-PER", "B-ORG"):  # tp 1, true 1, predicted 1
        assert per[tag] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    # B-LOC: missed (true 1, predicted 0); I-ORG, B-MISC: spurious (true 0, predicted 1)
    assert per["B-LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert per["I-ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert per["B-MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # macro F1 = (2/3 + 1 + 1 + 0 + 1 + 0 + 0) / 7 tags = (11/3) / 7 = 11/21
    assert scores["macro_f1"] == pytest.approx(11 / 21)
    # weighted F1 = (2/3*2 + 1*1 + 1*1 + 0*1 + 1*1) / 6 = (13/3) / 6 = 13/18
    assert scores["weighted_f1"] == pytest.approx(13 / 18)


def test_token_scores_match_sklearn():
    from sklearn.metrics import precision_recall_fscore_support

    flat_true = [tag for sentence in TRUE for tag in sentence]
    flat_pred = [tag for sentence in PRED for tag in sentence]
    _, _, f1, support = precision_recall_fscore_support(
        flat_true, flat_pred, labels=TAGS, zero_division=0
    )
    scores = token_scores(TRUE, PRED, TAGS)
    assert [scores["per_class"][tag]["f1"] for tag in TAGS] == pytest.approx(list(f1))
    assert [scores["per_class"][tag]["support"] for tag in TAGS] == list(support)


def test_token_scores_unknown_tag_is_named():
    with pytest.raises(ValueError, match=r"pred_tags\[1\]\[1\] = 'I-FOO' is not one of tag_names"):
        token_scores(TRUE, [PRED[0], ["B-ORG", "I-FOO"]], TAGS)
    with pytest.raises(ValueError, match=r"true_tags\[0\]\[3\] = 'B-LOC' is not one of"):
        token_scores(TRUE, PRED, [tag for tag in TAGS if tag != "B-LOC"])


def test_token_scores_duplicate_tag_names():
    with pytest.raises(ValueError, match=r"tag_names lists \['O'\] more than once"):
        token_scores(TRUE, PRED, [*TAGS, "O"])


@pytest.mark.parametrize("scores_fn", [entity_scores, lambda t, p: token_scores(t, p, TAGS)])
def test_unequal_sentence_lengths_name_the_sentence(scores_fn):
    pred = [PRED[0], ["B-ORG"]]
    with pytest.raises(ValueError, match="sentence 1: true_tags has 2 tags, pred_tags has 1"):
        scores_fn(TRUE, pred)


def test_unequal_number_of_sentences():
    with pytest.raises(ValueError, match="true_tags has 2 sentences, pred_tags has 1"):
        entity_scores(TRUE, PRED[:1])


def test_flat_tag_list_is_an_error():
    with pytest.raises(ValueError, match=r"true_tags\[0\] is the string 'B-PER'"):
        entity_scores(["B-PER", "O"], ["B-PER", "O"])


@pytest.mark.parametrize("tag", ["PER", "B", "B-", "X-PER"])
def test_entity_scores_reject_non_entity_tags(tag):
    with pytest.raises(ValueError, match=rf"pred_tags\[0\]\[1\] = '{tag}' is not an entity tag"):
        entity_scores([["O", "B-PER"]], [["O", tag]])


def test_scores_round_trip_through_json():
    entity, token = entity_scores(TRUE, PRED), token_scores(TRUE, PRED, TAGS)
    for scores in (entity, token):
        assert json.loads(json.dumps(scores)) == scores
    # plain Python numbers, not numpy scalars (np.float64 would pass json.dumps, np.int64 not)
    assert type(entity["f1"]) is float
    assert type(entity["per_type"]["PER"]["precision"]) is float
    assert type(entity["per_type"]["PER"]["support"]) is int
    assert type(entity["n_entities_pred"]) is int


def test_markdown_entity_and_token_tables():
    text = sequence_report_markdown(entity_scores(TRUE, PRED), token_scores(TRUE, PRED, TAGS))
    assert "## Entities" in text and "## Tokens" in text
    assert "| type | precision | recall | F1 | support |" in text
    for name in ("LOC", "MISC", "ORG"):
        assert f"| {name} | 0.0000 | 0.0000 | 0.0000 |" in text
    assert "| PER | 1.0000 | 1.0000 | 1.0000 | 1 |" in text
    # entity averages: micro 1/3; macro P = R = (0+0+0+1)/4; weighted P = R = (0+0+0+1*1)/3
    assert "| micro avg | 0.3333 | 0.3333 | 0.3333 | 3 |" in text
    assert "| macro avg | 0.2500 | 0.2500 | 0.2500 | 3 |" in text
    assert "| weighted avg | 0.3333 | 0.3333 | 0.3333 | 3 |" in text
    assert "2 sentences, 3 true entities, 3 predicted." in text
    # token averages: micro = accuracy 4/6; macro P = (1+1+1+0+1+0+0)/7 = 4/7,
    # macro R = (0.5+1+1+0+1+0+0)/7 = 1/2, macro F1 = 11/21; weighted P = (1*2+1+1+0+1)/6 = 5/6,
    # weighted R = (0.5*2+1+1+0+1)/6 = 2/3, weighted F1 = 13/18
    assert "| tag | precision | recall | F1 | support |" in text
    assert "| O | 1.0000 | 0.5000 | 0.6667 | 2 |" in text
    assert "| micro avg | 0.6667 | 0.6667 | 0.6667 | 6 |" in text
    assert "| macro avg | 0.5714 | 0.5000 | 0.5238 | 6 |" in text
    assert "| weighted avg | 0.8333 | 0.6667 | 0.7222 | 6 |" in text


def test_markdown_averages_match_seqeval_report():
    from seqeval.metrics import classification_report

    report = classification_report(TRUE, PRED, output_dict=True, mode=None, zero_division=0)
    text = sequence_report_markdown(entity_scores(TRUE, PRED))
    for row in ("macro avg", "weighted avg"):
        p, r, f = (report[row][k] for k in ("precision", "recall", "f1-score"))
        assert f"| {row} | {p:.4f} | {r:.4f} | {f:.4f} | 3 |" in text


def test_markdown_without_token_and_without_entities():
    text = sequence_report_markdown(entity_scores([["O"]], [["O"]]))
    assert "## Tokens" not in text
    assert "| micro avg | 0.0000 | 0.0000 | 0.0000 | 0 |" in text
    assert "| macro avg | 0.0000 | 0.0000 | 0.0000 | 0 |" in text
    assert text.endswith("\n") and not text.endswith("\n\n")
