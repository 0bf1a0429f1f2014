"""Every problem type has its own title (RFC 9457: the title summarises the type, so two types never share one)."""

from __future__ import annotations

from service.api import errors


def _problem_types() -> list[type[errors.Problem]]:
    found, todo = [], [errors.Problem]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_each_slug_has_one_title_of_its_own() -> None:
    titles: dict[str, str] = {}
    for cls in _problem_types():
        titles.setdefault(cls.slug, cls.title)
        assert titles[cls.slug] == cls.title, cls
    assert len(set(titles.values())) == len(titles), titles


def test_unknown_task_is_not_titled_validation_failed() -> None:
    assert errors.UnknownTaskProblem.title == "Unknown Task"
    assert errors.UnknownTaskProblem.status == 422
