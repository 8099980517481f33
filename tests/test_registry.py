"""The one registry mechanism: names, suggestions, loud overwrites."""

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


def test_registering_a_taken_name_replaces_it_loudly():
    registry = Registry("model")
    first, second = object(), object()
    registry.register("net", first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.register("net", first)  # the same object again is no change: silent
    with pytest.warns(RegistryOverwriteWarning, match="model 'net' registered again"):
        registry.register("net", second)
    assert registry.get("net") is second
    assert registry.unregister("net") is second and "net" not in registry
