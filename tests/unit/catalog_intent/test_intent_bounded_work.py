"""A sentence is read in work that does not grow with the square of its words: MatchIntent reads it
on the event loop that also prices every order (Quote), so a second spent on one hostile sentence
was a second of every buyer's Quote waiting."""
from services.catalog.intent import BrandSpec, ItemSpec, build_resolver, load_demo_specs
from services.catalog.intent.resolver import MAX_CANDIDATES, MAX_MENTIONS, RuleBasedResolver


def _counting(monkeypatch, name):
    calls = []
    real = getattr(RuleBasedResolver, name)

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RuleBasedResolver, name, counted)
    return calls


def test_an_ambiguous_word_said_hundreds_of_times_builds_only_the_readings_offered(monkeypatch):
    resolver = build_resolver(*load_demo_specs())
    built = _counting(monkeypatch, "_candidate")
    # 随便: the choice is left to us, so the readings are built (a bare 拿铁 is asked about).
    reading = resolver.resolve("随便" + "拿铁，" * MAX_MENTIONS)
    # 拿铁 is several lattes: each mention had two alternatives, and all 101 readings were
    # built (each reading the whole sentence) to keep 8.
    assert reading.candidates and len(reading.candidates) <= MAX_CANDIDATES
    assert len(built) <= MAX_CANDIDATES


def test_a_word_many_brands_sell_is_chosen_for_once_per_brand(monkeypatch):
    brands = [BrandSpec(f"b{n}", f"茶铺{chr(0x4e00 + n)}{chr(0x4e80 + n)}", (), "茶饮") for n in range(20)]
    items = [ItemSpec(f"b{n}-i{k}", f"b{n}", f"{chr(0x4f00 + k)}{chr(0x5000 + k)}绿茶", ("茶",), "茶饮", 1000, ())
             for n in range(20) for k in range(3)]
    resolver = build_resolver(brands, items)
    chosen = _counting(monkeypatch, "_choices")
    reading = resolver.resolve("随便" + "茶" * MAX_MENTIONS)
    assert reading.candidates
    # 50 mentions at 20 brands were 1,000 choices; the mentions are all alike.
    assert len(chosen) <= 20 * 2



def test_a_sentence_asking_for_more_than_an_order_holds_is_asked_to_be_split_before_any_choosing(monkeypatch):
    resolver = build_resolver(*load_demo_specs())
    chosen = _counting(monkeypatch, "_choices")
    reading = resolver.resolve("奶茶" * 250)  # 500 characters, 250 mentions
    assert not reading.candidates and "250" in reading.clarification and f"{MAX_MENTIONS}" in reading.clarification
    assert not chosen
    assert resolver.resolve("随便" + "拿铁，" * MAX_MENTIONS).candidates  # as many as an order holds is read
