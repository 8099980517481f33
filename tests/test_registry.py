"""The one registry mechanism: names, suggestions, refused duplicates, loud overrides."""

import warnings

import pytest

from videotl.registry import Registry, RegistryError, RegistryOverwriteWarning


def test_register_get_names_and_patterns():
    registry = Registry("widget")
    registry.register("alpha", 1)

    @registry.register("beta_one")
    def beta():
        return 2

    assert registry.get("alpha") == 1 and registry.get("beta_one") is beta
    assert "alpha" in registry and "gamma" not in registry and len(registry) == 2
    assert registry.names() == ["alpha", "beta_one"] and registry.names("beta*") == ["beta_one"]


def test_unknown_name_is_named_with_suggestions_and_the_known_names():
    registry = Registry("tokenizer")
    registry.register("tokenlearner", object())
    registry.register("fixed_grid", object())
    with pytest.raises(RegistryError) as info:
        registry.get("tokenlerner")
    message = str(info.value)
    assert "unknown tokenizer 'tokenlerner'" in message and "did you mean 'tokenlearner'" in message
    assert "fixed_grid" in message


def test_a_taken_name_raises_unless_overriding_which_is_loud():
    registry = Registry("model")
    first, second = object(), object()
    registry.register("net", first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.register("net", first)  # the same object again is no change: silent
    with pytest.raises(RegistryError, match="model 'net' is registered already .*override=True"):
        registry.register("net", second)
    assert registry.get("net") is first
    with pytest.raises(RegistryError, match="model 'net' is registered already"):
        registry.register("net")(second)
    with pytest.warns(RegistryOverwriteWarning, match="model 'net' registered again"):
        registry.register("net", second, override=True)
    assert registry.get("net") is second
    assert registry.unregister("net") is second and "net" not in registry
