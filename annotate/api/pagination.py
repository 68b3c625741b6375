"""Pagination for list endpoints (API.md: `?page=` for most lists, `?cursor=` for the long label list)."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination, PageNumberPagination

# The query parameters the paginators read: they page through a list rather than filter it.
PAGING_PARAMETERS = frozenset({"page", "cursor", "page_size"})


class PagePagination(PageNumberPagination):
    page_size = 50
    # Clients may ask for larger pages with ?page_size=, up to this bound, to limit one response's cost.
    page_size_query_param = "page_size"
    max_page_size = 1000


class IdCursorPagination(CursorPagination):
    """Stable paging through lists that grow while being read (labels keep arriving)."""

    ordering = "id"
    page_size = 200
    page_size_query_param = "page_size"
    max_page_size = 5000


def paginated(*, view, request, queryset, serializer_class, context=None):
    """Return the paginated response of one page of `queryset`, serialized with `serializer_class`.

    The paginator is the view's `pagination_class`, where drf-spectacular also reads it to document the page.
    """
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context=context or {}).data)
