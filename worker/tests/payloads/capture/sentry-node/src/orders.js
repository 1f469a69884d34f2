'use strict';

function loadOrder(db, id) {
  const row = db.rows[id];
  return { id, total: row.total };
}

function orderTotal(db, id) {
  return loadOrder(db, id).total;
}

module.exports = { orderTotal };
