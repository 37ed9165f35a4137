import numpy as np
from scipy import sparse

from codegraph_ad.graph.diagnostics import edge_list, graph_layout, plot_graph


def _graph():
    w = np.zeros((6, 6))
    for a, b, x in [(0, 1, 2.0), (0, 4, 5.0), (1, 2, 2.0), (3, 5, 5.0), (2, 5, 1.0), (1, 4, 2.0)]:
        w[a, b] = w[b, a] = x
    w[3, 3] = 7.0  # a self-edge is no pair: never listed
    return w


def test_edge_list_heaviest_first_ties_row_major_from_sparse_or_dense():
    w = _graph()
    expect = [(0, 4, 5.0), (3, 5, 5.0), (0, 1, 2.0), (1, 2, 2.0), (1, 4, 2.0), (2, 5, 1.0)]
    for inp in (w, sparse.csr_array(w), sparse.coo_matrix(w)):
        got = edge_list(inp)
        assert [(e["source"], e["target"], e["weight"]) for e in got] == expect
        assert all(type(e["source"]) is int and type(e["weight"]) is float for e in got)
    assert edge_list(sparse.csr_array((4, 4))) == []


def test_layout_and_plot_take_sparse_weights(tmp_path):
    w = _graph()
    np.testing.assert_array_equal(graph_layout(w, seed=3), graph_layout(sparse.csr_array(w), seed=3))
    p = plot_graph(sparse.csr_array(w), np.array([0, 0, 0, 1, 0, 1]), [1], None, tmp_path / "g.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_rebuilds_the_sparse_graph_from_the_edge_list():
    from codegraph_ad.report.graph_files import subset_graph
    from codegraph_ad.report.graph_svg import weights_from_edges

    w = _graph()
    np.fill_diagonal(w, 0.0)
    edges = edge_list(sparse.csr_array(w))
    rebuilt = weights_from_edges(6, edges)
    assert sparse.issparse(rebuilt) and rebuilt.nnz == 2 * len(edges)
    np.testing.assert_array_equal(rebuilt.toarray(), w)
    diag = {"n_images": 6, "edges": edges, "communities": [{"id": 0, "images": [0, 1, 2, 4]},
                                                           {"id": 1, "images": [3, 5]}], "outlier_communities": [1]}
    weights, membership, outliers = subset_graph(diag)
    np.testing.assert_array_equal(weights.toarray(), w)
    assert membership.tolist() == [0, 0, 0, 1, 0, 1] and outliers == [1]
