//! Sentry's cursor pagination: a cursor is `value:offset:is_prev` — the sort key of the
//! page boundary, how many rows with exactly that key were already shown, and the
//! direction — so pages are keyset range queries on an index, never large OFFSETs. The
//! `Link` header names the previous and next pages the way sentry-cli reads them
//! (`rel="next"; results="true"; cursor="..."`).

use actix_web::HttpRequest;
use sea_orm::Value;

use super::{ApiError, ApiResult};

/// A position in a list sorted by (key, id), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub value: i64,
    pub offset: u64,
    pub is_prev: bool,
}

impl Cursor {
    /// Parses `value:offset:is_prev`; an empty string is the first page.
    pub fn parse(s: &str) -> ApiResult<Option<Cursor>> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let bad = || ApiError::bad_request(format!("invalid cursor `{s}`"));
        let mut parts = s.split(':');
        let value = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let offset = parts.next().unwrap_or("0").parse().map_err(|_| bad())?;
        let is_prev = match parts.next().unwrap_or("0") {
            "0" => false,
            "1" => true,
            _ => return Err(bad()),
        };
        if parts.next().is_some() || offset > 1_000_000 {
            return Err(bad());
        }
        Ok(Some(Cursor {
            value,
            offset,
            is_prev,
        }))
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.value,
            self.offset,
            u8::from(self.is_prev)
        )
    }
}

/// The SQL of one page: a condition on the key, the order and the offset.
pub struct PageQuery {
    /// `AND key <= ?` (or `>=` going back), empty on the first page.
    pub condition: String,
    pub values: Vec<Value>,
    pub order_by: String,
    pub offset: u64,
    /// Rows to fetch: one more than shown, to know whether more follow.
    pub fetch: u64,
}

/// Builds the page query for a list sorted by `key` then `id`, newest first.
pub fn page_query(cursor: Option<Cursor>, key: &str, id: &str, limit: u64) -> PageQuery {
    match cursor {
        None => PageQuery {
            condition: String::new(),
            values: vec![],
            order_by: format!("{key} DESC, {id} DESC"),
            offset: 0,
            fetch: limit + 1,
        },
        Some(c) if !c.is_prev => PageQuery {
            condition: format!(" AND {key} <= ?"),
            values: vec![c.value.into()],
            order_by: format!("{key} DESC, {id} DESC"),
            offset: c.offset,
            fetch: limit + 1,
        },
        Some(c) => PageQuery {
            condition: format!(" AND {key} >= ?"),
            values: vec![c.value.into()],
            order_by: format!("{key} ASC, {id} ASC"),
            offset: c.offset,
            fetch: limit + 1,
        },
    }
}

/// A fetched page: rows in display order (newest first) with their keys.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
    pub prev: Option<Cursor>,
    pub has_next: bool,
    pub has_prev: bool,
}

/// Turns the rows of [`page_query`] (with each row's key) into a page and its cursors.
pub fn finish_page<T>(mut rows: Vec<(i64, T)>, cursor: Option<Cursor>, limit: u64) -> Page<T> {
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let going_back = cursor.is_some_and(|c| c.is_prev);
    if going_back {
        rows.reverse();
    }
    let keys: Vec<i64> = rows.iter().map(|(k, _)| *k).collect();
    let (has_next, has_prev) = if going_back {
        (true, more)
    } else {
        (more, cursor.is_some())
    };
    let boundary = |key: i64, carried: u64| Cursor {
        value: key,
        offset: keys.iter().filter(|k| **k == key).count() as u64 + carried,
        is_prev: false,
    };
    let next = keys.last().map(|&last| {
        let carried = match cursor {
            Some(c) if !c.is_prev && c.value == last && keys.iter().all(|k| *k == last) => c.offset,
            _ => 0,
        };
        boundary(last, carried)
    });
    let prev = keys.first().map(|&first| {
        let carried = match cursor {
            Some(c) if c.is_prev && c.value == first && keys.iter().all(|k| *k == first) => {
                c.offset
            }
            _ => 0,
        };
        Cursor {
            is_prev: true,
            ..boundary(first, carried)
        }
    });
    Page {
        items: rows.into_iter().map(|(_, t)| t).collect(),
        next: next.or(cursor.map(|c| Cursor {
            is_prev: false,
            ..c
        })),
        prev: prev.or(cursor.map(|c| Cursor { is_prev: true, ..c })),
        has_next,
        has_prev,
    }
}

/// The `Link` header for a page of the list at the request's URL.
pub fn link_header<T>(req: &HttpRequest, page: &Page<T>) -> String {
    let base = format!("{}{}", super::request_base(req), req.path());
    let base = if base.ends_with('/') {
        base
    } else {
        format!("{base}/")
    };
    let other: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let link = |rel: &str, cursor: Option<Cursor>, results: bool| {
        let c = cursor
            .map(|c| c.to_string())
            .unwrap_or_else(|| "0:0:0".into());
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &other {
            q.append_pair(k, v);
        }
        q.append_pair("cursor", &c);
        format!(
            "<{base}?{}>; rel=\"{rel}\"; results=\"{results}\"; cursor=\"{c}\"",
            q.finish()
        )
    };
    format!(
        "{}, {}",
        link("previous", page.prev, page.has_prev),
        link("next", page.next, page.has_next)
    )
}

/// `?per_page=` (or `limit`), default 100 as Sentry's lists, at most 100.
pub fn per_page(q: Option<&str>) -> ApiResult<u64> {
    match q {
        None | Some("") => Ok(100),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "per_page must be a number from 1 to 100",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor::parse("1700000000000:2:1").unwrap().unwrap();
        assert_eq!(
            c,
            Cursor {
                value: 1_700_000_000_000,
                offset: 2,
                is_prev: true
            }
        );
        assert_eq!(c.to_string(), "1700000000000:2:1");
        assert_eq!(Cursor::parse("").unwrap(), None);
        assert!(Cursor::parse("abc").is_err());
        assert!(Cursor::parse("1:2:3").is_err());
        assert!(Cursor::parse("1:2:0:4").is_err());
    }

    /// Walks a list with ties on the key forwards and back; every row appears exactly once.
    #[test]
    fn keyset_pages_with_ties_cover_every_row_once() {
        // (key, id), newest first.
        let mut all: Vec<(i64, i64)> = (0..23).map(|i| (i / 3, i)).collect();
        all.sort_by(|a, b| b.cmp(a));
        let fetch = |cursor: Option<Cursor>, limit: u64| {
            let mut rows: Vec<(i64, i64)> = match cursor {
                None => all.clone(),
                Some(c) if !c.is_prev => all.iter().copied().filter(|r| r.0 <= c.value).collect(),
                Some(c) => {
                    let mut v: Vec<_> = all.iter().copied().filter(|r| r.0 >= c.value).collect();
                    v.reverse();
                    v
                }
            };
            let offset = cursor.map(|c| c.offset).unwrap_or(0) as usize;
            rows = rows
                .into_iter()
                .skip(offset)
                .take(limit as usize + 1)
                .collect();
            finish_page(rows.into_iter().map(|r| (r.0, r)).collect(), cursor, limit)
        };
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = Vec::new();
        loop {
            let page = fetch(cursor, 4);
            seen.extend(page.items.clone());
            pages.push((cursor, page.items.clone()));
            if !page.has_next {
                break;
            }
            cursor = page.next;
        }
        assert_eq!(seen, all);
        // Going back from the last page gives the page before it.
        let last = fetch(pages.last().unwrap().0, 4);
        let back = fetch(last.prev, 4);
        assert_eq!(back.items, pages[pages.len() - 2].1);
    }
}
