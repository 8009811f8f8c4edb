//! One table per VADER rule: texts and the scores vaderSentiment 3.3.2 gives them (printed by
//! the reference for each text). A failure names the rule's group and the text.

use earshot_sentiment::SentimentAnalyzer;

#[rustfmt::skip]
const CASES: &[(&str, [f64; 4])] = &[
    // lexicon words and neutral words
    ("The book was good.", [0.0, 0.508, 0.492, 0.4404]),
    ("The book was bad.", [0.538, 0.462, 0.0, -0.5423]),
    ("The book was on the table.", [0.0, 1.0, 0.0, 0.0]),
    ("", [0.0, 0.0, 0.0, 0.0]),
    ("   ", [0.0, 0.0, 0.0, 0.0]),
    ("lol", [0.0, 0.0, 1.0, 0.4215]),
    ("LOL", [0.0, 0.0, 1.0, 0.4215]),
    // boosters and dampeners, one to three words back
    ("The book was very good.", [0.0, 0.556, 0.444, 0.4927]),
    ("The book was extremely very good.", [0.0, 0.59, 0.41, 0.5379]),
    ("very very very good", [0.0, 0.445, 0.555, 0.5768]),
    ("The book was kinda good.", [0.0, 0.605, 0.395, 0.3832]),
    ("The book was barely good.", [0.0, 0.605, 0.395, 0.3832]),
    ("very bad", [0.791, 0.209, 0.0, -0.5849]),
    ("it is really so very terrible", [0.44, 0.56, 0.0, -0.604]),
    // multi-word dampeners: kind of, sort of, just enough
    ("The book was only kind of good.", [0.0, 0.697, 0.303, 0.3832]),
    ("it was sort of great", [0.0, 0.512, 0.488, 0.5868]),
    ("it was just enough fun", [0.0, 0.571, 0.429, 0.4601]),
    ("kind of", [0.0, 1.0, 0.0, 0.0]),
    ("I kind of hate it", [0.5, 0.5, 0.0, -0.6115]),
    // negation one to three words back, contractions
    ("The book was not good.", [0.376, 0.624, 0.0, -0.3412]),
    ("not very good", [0.567, 0.433, 0.0, -0.3865]),
    ("The book isn't good.", [0.445, 0.555, 0.0, -0.3412]),
    ("I don't really like it", [0.368, 0.632, 0.0, -0.3241]),
    ("It was not at all good", [0.325, 0.675, 0.0, -0.3412]),
    ("aint good", [0.706, 0.294, 0.0, -0.3412]),
    ("never good", [0.706, 0.294, 0.0, -0.3412]),
    ("nothing good", [0.706, 0.294, 0.0, -0.3412]),
    ("without hope", [0.706, 0.294, 0.0, -0.3412]),
    // negation by no
    ("no good", [0.706, 0.294, 0.0, -0.3412]),
    ("no problem", [0.0, 0.307, 0.693, 0.3089]),
    ("there is no hope", [0.445, 0.555, 0.0, -0.3412]),
    ("no", [1.0, 0.0, 0.0, -0.296]),
    ("no no", [0.0, 0.346, 0.654, 0.2235]),
    ("no joy or love", [0.763, 0.237, 0.0, -0.7536]),
    ("no love nor hope", [0.455, 0.27, 0.275, -0.3243]),
    ("no, thanks", [0.0, 0.256, 0.744, 0.4404]),
    // never so, never this, without doubt
    ("never so good", [0.0, 0.348, 0.652, 0.5777]),
    ("never this happy", [0.0, 0.314, 0.686, 0.657]),
    ("it was so good", [0.0, 0.445, 0.555, 0.5777]),
    ("without doubt good", [0.0, 0.166, 0.834, 0.6136]),
    ("without a doubt good", [0.0, 0.285, 0.715, 0.6136]),
    ("this so good", [0.0, 0.385, 0.615, 0.4927]),
    // least
    ("least good", [0.706, 0.294, 0.0, -0.3412]),
    ("the least good", [0.546, 0.454, 0.0, -0.3412]),
    ("at least good", [0.0, 0.408, 0.592, 0.4404]),
    ("very least good", [0.0, 0.386, 0.614, 0.4902]),
    ("At least it isn't a horrible book.", [0.0, 0.678, 0.322, 0.431]),
    // but
    ("The plot was good, but the characters are uncompelling and the dialog is not great.", [0.327, 0.579, 0.094, -0.7042]),
    ("good but bad", [0.617, 0.13, 0.253, -0.5859]),
    ("bad but good", [0.317, 0.141, 0.542, 0.3818]),
    ("but good", [0.0, 0.206, 0.794, 0.5927]),
    ("good but", [0.0, 0.339, 0.661, 0.2382]),
    ("good BUT bad", [0.617, 0.13, 0.253, -0.5859]),
    ("good but good but bad", [0.378, 0.159, 0.462, 0.0129]),
    ("love hate but love", [0.2, 0.085, 0.715, 0.7935]),
    // capitals emphasis
    ("VADER is VERY SMART, handsome, and FUNNY.", [0.0, 0.246, 0.754, 0.9227]),
    ("GOOD", [0.0, 0.0, 1.0, 0.4404]),
    ("GOOD book", [0.0, 0.216, 0.784, 0.5622]),
    ("VERY good book", [0.0, 0.337, 0.663, 0.6028]),
    ("very GOOD book", [0.0, 0.337, 0.663, 0.6028]),
    ("Today SUX!", [0.779, 0.221, 0.0, -0.5461]),
    ("NOT GOOD at all", [0.496, 0.504, 0.0, -0.4494]),
    (":D good", [0.0, 0.0, 1.0, 0.7865]),
    // exclamation and question marks
    ("good!", [0.0, 0.0, 1.0, 0.4926]),
    ("good!!", [0.0, 0.0, 1.0, 0.5399]),
    ("good!!!!", [0.0, 0.0, 1.0, 0.6209]),
    ("good!!!!!!!", [0.0, 0.0, 1.0, 0.6209]),
    ("good?", [0.0, 0.0, 1.0, 0.4404]),
    ("good??", [0.0, 0.0, 1.0, 0.504]),
    ("good???", [0.0, 0.0, 1.0, 0.533]),
    ("good????", [0.0, 0.0, 1.0, 0.594]),
    ("bad!!!", [1.0, 0.0, 0.0, -0.6571]),
    ("why??", [0.0, 1.0, 0.0, 0.0]),
    ("neutral!!!", [0.0, 1.0, 0.0, 0.0]),
    // special phrases and idioms
    ("the shit", [0.783, 0.217, 0.0, -0.5574]),
    ("this is the shit", [0.0, 0.429, 0.571, 0.6124]),
    ("that was the bomb", [0.0, 0.429, 0.571, 0.6124]),
    ("what a bad ass", [0.438, 0.25, 0.312, -0.25]),
    ("yeah right", [0.0, 0.312, 0.688, 0.296]),
    ("kiss of death for it", [0.402, 0.309, 0.289, -0.2732]),
    ("a dress to die for", [0.494, 0.506, 0.0, -0.5994]),
    ("my beating heart", [0.366, 0.122, 0.512, 0.296]),
    ("the bus stop is near", [0.355, 0.645, 0.0, -0.296]),
    ("he is a badass", [0.0, 0.556, 0.444, 0.34]),
    // emoticons and emoji
    ("Make sure you :) or :D today!", [0.0, 0.294, 0.706, 0.8633]),
    ("Catch utf-8 emoji such as 💘 and 💋 and 😁", [0.0, 0.583, 0.417, 0.875]),
    ("sad 😭", [0.756, 0.244, 0.0, -0.7351]),
    ("😭sad", [0.608, 0.392, 0.0, -0.4767]),
    ("hi😀there", [0.0, 0.444, 0.556, 0.3612]),
    ("❤", [0.0, 0.192, 0.808, 0.6369]),
    ("❤\u{FE0F}", [0.0, 1.0, 0.0, 0.0]),
    ("👍🏽", [0.0, 1.0, 0.0, 0.0]),
    (":(", [1.0, 0.0, 0.0, -0.4404]),
    (":-(", [1.0, 0.0, 0.0, -0.3612]),
    ("<3", [0.0, 0.0, 1.0, 0.4404]),
    ("</3", [1.0, 0.0, 0.0, -0.6124]),
    // punctuation stripping
    ("(good)", [0.0, 0.0, 1.0, 0.4404]),
    ("'good'", [0.0, 0.0, 1.0, 0.4404]),
    ("good...", [0.0, 0.0, 1.0, 0.4404]),
    ("--good--", [0.0, 0.0, 1.0, 0.4404]),
    ("ok!", [0.0, 1.0, 0.0, 0.0]),
    ("#good", [0.0, 0.0, 1.0, 0.4404]),
    ("@bad", [1.0, 0.0, 0.0, -0.5423]),
    // unusual whitespace
    ("good\u{00A0}bad", [0.547, 0.0, 0.453, -0.1531]),
    ("good\u{001c}bad", [0.547, 0.0, 0.453, -0.1531]),
    ("good\u{200B}bad", [0.0, 1.0, 0.0, 0.0]),
    ("not\tgood", [0.706, 0.294, 0.0, -0.3412]),
    ("not\ngood", [0.706, 0.294, 0.0, -0.3412]),
    // non-ASCII case
    ("ÉCOLE good", [0.0, 0.256, 0.744, 0.4404]),
    ("café GOOD", [0.0, 0.216, 0.784, 0.5622]),
    ("ǅ GOOD", [0.0, 0.216, 0.784, 0.5622]),
    ("ΣΑΣ good", [0.0, 0.256, 0.744, 0.4404]),
];

#[test]
fn each_rule_scores_as_the_reference() {
    let analyzer = SentimentAnalyzer::default();
    let mut failures = Vec::new();
    for (text, want) in CASES {
        let got = analyzer.polarity_scores(text);
        let got = [got.neg, got.neu, got.pos, got.compound];
        if got != *want {
            failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn long_texts_with_many_buts_score_as_the_reference() {
    // The reference rescales around "but" with list.index(), quadratically; these texts of
    // 1,200 and 1,700 words are scored the same by both (scores printed by the reference).
    let analyzer = SentimentAnalyzer::default();
    let check = |text: String, want: [f64; 4]| {
        let got = analyzer.polarity_scores(&text);
        assert_eq!([got.neg, got.neu, got.pos, got.compound], want);
    };
    check("good but bad ".repeat(400), [0.495, 0.104, 0.401, -0.9999]);
    check(
        "I love it but it broke and the support was great but slow and bad and good ".repeat(100),
        [0.221, 0.287, 0.492, 1.0],
    );
}
