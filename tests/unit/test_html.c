/*
 * Tests for src/message/html.c: visible and hidden text, links, and bounded
 * behaviour on hostile HTML.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/utf8.h"
#include "message/html.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Hostile inputs must finish well within this much CPU time (quadratic work would take
 * minutes). CPU time of this thread, not wall time: a loaded machine must not fail it. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_HTML_MAX_SECONDS 8.0
#else
#define TEST_HTML_MAX_SECONDS 2.0
#endif

static int test_setup(void **state)
{
    *state = arena_new(0);
    return 0;
}

static int test_teardown(void **state)
{
    arena_free(*state);
    return 0;
}

static struct html_result test_extract_len(void **state, const char *html, size_t len)
{
    struct html_result r;

    html_extract(*state, html, len, &r);
    assert_non_null(r.text);
    assert_non_null(r.hidden);
    assert_int_equal(strlen(r.text), r.text_len);
    assert_int_equal(strlen(r.hidden), r.hidden_len);
    assert_true(utf8_valid(r.text, r.text_len));
    assert_true(utf8_valid(r.hidden, r.hidden_len));
    return r;
}

static struct html_result test_extract(void **state, const char *html)
{
    return test_extract_len(state, html, strlen(html));
}

static double test_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A malloc'd string of n copies of unit followed by tail. */
static char *test_repeat(const char *unit, size_t n, const char *tail)
{
    struct buf b = {0};
    size_t i;

    for (i = 0; i < n; i++)
        buf_append_str(&b, unit);
    buf_append_str(&b, tail);
    return buf_release(&b);
}

/* ---- text layout ---- */

static void test_empty_input_gives_empty_results(void **state)
{
    struct html_result r = test_extract_len(state, "", 0);

    assert_string_equal(r.text, "");
    assert_string_equal(r.hidden, "");
    assert_int_equal(r.hidden_chars, 0);
    assert_int_equal(r.n_links, 0);
    assert_int_equal(r.n_images, 0);
    assert_int_equal(r.flags, 0);
}

static void test_blocks_are_separated_by_one_newline(void **state)
{
    struct html_result r =
        test_extract(state, "<p>one</p><p>two</p><div><div><h1>three</h1></div></div>"
                            "four<br>five<ul><li>six</li><li>seven</li></ul>");

    assert_string_equal(r.text, "one\ntwo\nthree\nfour\nfive\nsix\nseven");
}

static void test_table_cells_are_separated(void **state)
{
    struct html_result r =
        test_extract(state, "<table><tr><td>a</td><td>b</td></tr><tr><th>c</th></tr></table>");

    assert_string_equal(r.text, "a\nb\nc");
}

static void test_inline_elements_do_not_split_words(void **state)
{
    struct html_result r = test_extract(state, "<p>Hel<b>lo</b> <i>wor</i><span>ld</span></p>");

    assert_string_equal(r.text, "Hello world");
}

static void test_whitespace_is_collapsed(void **state)
{
    struct html_result r = test_extract(state, "  \n<p>  a \t\r\n b&nbsp;&nbsp;c\xe2\x80\x83"
                                               "d  </p>\n\n   <p>\n e </p>  ");

    assert_string_equal(r.text, "a b c d\ne");
}

static void test_entities_are_decoded(void **state)
{
    struct html_result r =
        test_extract(state, "<p>&amp;&lt;&gt;&quot;&#65;&#x42;&eacute;&euro;</p>");

    assert_string_equal(r.text, "&<>\"AB\xc3\xa9\xe2\x82\xac");
}

static void test_broken_entities_do_not_break_text(void **state)
{
    struct html_result r =
        test_extract(state, "<p>a &bogus; b &#xZZ; c &#0; d &#xD800; e &#99999999; f &amp</p>");

    assert_non_null(strstr(r.text, "a &bogus; b"));
    assert_non_null(strstr(r.text, "f &"));
}

/* ---- text that is never text ---- */

static void test_script_text_is_skipped(void **state)
{
    struct html_result r =
        test_extract(state, "<p>a</p><script>document.write('evil')</script><p>b</p>");

    assert_string_equal(r.text, "a\nb");
    assert_string_equal(r.hidden, "");
    assert_true(r.flags & HTML_F_SCRIPT);
}

static void test_style_title_and_comments_are_skipped(void **state)
{
    struct html_result r = test_extract(
        state, "<html><head><title>The subject</title><style>p { color: red }</style></head>"
               "<body>x<!-- a comment -->y<template>tpl</template></body></html>");

    assert_string_equal(r.text, "xy");
    assert_int_equal(r.flags & HTML_F_SCRIPT, 0);
}

static void test_unclosed_script_hides_the_rest(void **state)
{
    struct html_result r = test_extract(state, "<p>before</p><script>var x = 1; <b>after</b>");

    assert_string_equal(r.text, "before");
    assert_true(r.flags & HTML_F_SCRIPT);
}

static void test_text_in_head_is_visible(void **state)
{
    struct html_result r = test_extract(state, "<head><title>t</title>shown</head><body>x</body>");

    assert_string_equal(r.text, "shown\nx");
}

/* ---- encoding ---- */

static void test_meta_charset_is_ignored(void **state)
{
    struct html_result r = test_extract(state, "<html><head><meta charset=\"iso-8859-1\"></head>"
                                               "<body>caf\xc3\xa9</body></html>");

    assert_string_equal(r.text, "caf\xc3\xa9");
}

static void test_meta_http_equiv_charset_is_ignored(void **state)
{
    struct html_result r =
        test_extract(state, "<html><head><meta http-equiv=\"Content-Type\" "
                            "content=\"text/html; charset=windows-1252\"></head><body>caf\xc3\xa9 "
                            "\xe2\x82\xac</body></html>");

    assert_string_equal(r.text, "caf\xc3\xa9 \xe2\x82\xac");
}

static void test_nul_bytes_become_spaces(void **state)
{
    /* libxml2 itself would end the document at a NUL between tags. */
    static const char html[] = "\0<p>a\0b</p>\0<p>c\0</p>d";
    struct html_result r = test_extract_len(state, html, sizeof html - 1);

    assert_string_equal(r.text, "a b\nc\nd");
    assert_true(r.flags & HTML_F_BROKEN);
}

static void test_invalid_utf8_is_repaired(void **state)
{
    struct html_result r = test_extract(state, "\xff\xfe<p>bad \xe9 byte, good \xc3\xa9</p>");

    assert_non_null(strstr(r.text, "bad \xef\xbf\xbd byte, good \xc3\xa9"));
    assert_true(r.flags & HTML_F_BROKEN);
}

/* ---- hidden text ---- */

static void test_zero_font_text_is_hidden(void **state)
{
    static const char *const hidden_styles[] = {
        "<span style=\"font-size:0\">w</span>",
        "<span style=\"font-size: 0px\">w</span>",
        "<span style=\"FONT-SIZE:0PT\">w</span>",
        "<span style=\"font-size:0em\">w</span>",
        "<span style=\"font-size:0%\">w</span>",
        "<span style=\"font-size:1px !important\">w</span>",
        "<span style=\"font:0/0 a\">w</span>",
        "<span style=\"font: bold 1px Arial\">w</span>",
        "<font size=\"0\">w</font>",
        "<div style=\"font-size:10px\"><span style=\"font-size:0.1em\">w</span></div>",
    };
    size_t i;

    for (i = 0; i < sizeof hidden_styles / sizeof hidden_styles[0]; i++) {
        char *html = test_repeat(hidden_styles[i], 1, "shown");
        struct html_result r = test_extract(state, html);
        if (strcmp(r.text, "shown") != 0 || strcmp(r.hidden, "w") != 0)
            fail_msg("%s: text=\"%s\" hidden=\"%s\"", hidden_styles[i], r.text, r.hidden);
        free(html);
    }
}

static void test_small_readable_font_is_visible(void **state)
{
    struct html_result r =
        test_extract(state, "<span style=\"font-size:xx-small\">a</span> "
                            "<span style=\"font-size:2px\">b</span> "
                            "<font size=\"1\">c</font> <font size=\"-2\">d</font> "
                            "<div style=\"font-size:1px\"><span style=\"font-size:200%\">e</span>"
                            "</div><span style=\"font: 700 12px Arial\">f</span>");

    assert_string_equal(r.text, "a b c d\ne\nf");
    assert_string_equal(r.hidden, "");
}

static void test_display_none_text_is_hidden(void **state)
{
    struct html_result r =
        test_extract(state, "<p>a<span style=\"display: none\">x</span>"
                            "<span style=\"visibility:hidden\">y</span>"
                            "<span hidden>z</span><span style=\"opacity:0\">o</span>"
                            "<span style=\"color:transparent\">t</span>b</p>");

    assert_string_equal(r.text, "ab");
    assert_string_equal(r.hidden, "xyzot");
    assert_int_equal(r.hidden_chars, 5);
}

static void test_visibility_visible_reveals_but_display_none_does_not(void **state)
{
    struct html_result r = test_extract(
        state,
        "<div style=\"visibility:hidden\">h1<span style=\"visibility:visible\">v1</span></div>"
        "<div style=\"display:none\">h2<span style=\"display:block;visibility:visible\">"
        "h3</span></div>");

    assert_string_equal(r.text, "v1");
    assert_string_equal(r.hidden, "h1\nh2h3");
}

static void test_white_on_white_is_hidden(void **state)
{
    static const char *const hidden_styles[] = {
        "<font color=\"white\">w</font>",
        "<font color=\"#FFFFFF\">w</font>",
        "<font color=\"ffffff\">w</font>",
        "<span style=\"color:#fff\">w</span>",
        "<span style=\"color: rgb(255, 255, 255)\">w</span>",
        "<span style=\"color:rgb(100%,100%,100%)\">w</span>",
        "<span style=\"color:WHITE\">w</span>",
    };
    size_t i;

    for (i = 0; i < sizeof hidden_styles / sizeof hidden_styles[0]; i++) {
        char *html = test_repeat(hidden_styles[i], 1, "shown");
        struct html_result r = test_extract(state, html);
        if (strcmp(r.text, "shown") != 0 || strcmp(r.hidden, "w") != 0)
            fail_msg("%s: text=\"%s\" hidden=\"%s\"", hidden_styles[i], r.text, r.hidden);
        free(html);
    }
}

static void test_text_matching_its_background_is_hidden(void **state)
{
    struct html_result r = test_extract(
        state, "<body bgcolor=\"#000000\" text=\"#ffffff\">visible"
               "<table bgcolor=\"red\"><tr><td><font color=\"#ff0000\">red</font></td></tr></table>"
               "<div style=\"background: #00F url() no-repeat\">"
               "<p style=\"background-color: rgb(0,128,0); color: green\">green</p></div>"
               "<div style=\"color:black\">black</div></body>");

    assert_string_equal(r.text, "visible");
    assert_string_equal(r.hidden, "red\ngreen\nblack");
}

static void test_contrasting_colours_are_visible(void **state)
{
    struct html_result r =
        test_extract(state, "<div style=\"background-color:#000\"><font color=white>a</font></div>"
                            "<div style=\"color:#fefefe\">b</div>"
                            "<div style=\"background-color:transparent;color:#000\">c</div>");

    assert_string_equal(r.text, "a\nb\nc");
    assert_string_equal(r.hidden, "");
}

static void test_background_image_makes_light_text_visible(void **state)
{
    struct html_result r =
        test_extract(state, "<table><tr><td background=\"hero.jpg\"><font color=white>a</font></td>"
                            "<td style=\"background-image:url(x.png);color:#fff\">b</td>"
                            "<td style=\"background:linear-gradient(#fff,#000);color:#fff\">c</td>"
                            "</tr></table>");

    assert_string_equal(r.text, "a\nb\nc");
}

static void test_styles_inherit_until_the_element_closes(void **state)
{
    struct html_result r =
        test_extract(state, "<div style=\"font-size:0\"><p><b>deep <i>er</i></b></p></div>after");

    assert_string_equal(r.hidden, "deep er");
    assert_string_equal(r.text, "after");
}

static void test_hidden_text_between_visible_words_joins_them(void **state)
{
    struct html_result r = test_extract(
        state, "Via<span style=\"display:none\">xyz</span>gra <span hidden>a</span>b<span "
               "hidden>c</span>");

    assert_string_equal(r.text, "Viagra b");
    assert_string_equal(r.hidden, "xyz a c");
}

static void test_hidden_chars_counts_non_space_code_points(void **state)
{
    struct html_result r =
        test_extract(state, "<div style=\"display:none\">  \xc3\xa9t\xc3\xa9 \xe2\x82\xac&nbsp;x "
                            "</div><p style=\"display:none\">y</p>");

    assert_string_equal(r.hidden, "\xc3\xa9t\xc3\xa9 \xe2\x82\xac x\ny");
    assert_int_equal(r.hidden_chars, 6);
}

/* ---- links ---- */

static void test_anchor_text_is_collected(void **state)
{
    struct html_result r = test_extract(
        state, "<p>Go <a href=\"  https://example.com/a?x=1&amp;y=2\n \">click <b>here</b>"
               "<span style=\"display:none\">secret</span> now</a> please</p>");

    assert_int_equal(r.n_links, 1);
    assert_string_equal(r.links[0].tag, "a");
    assert_string_equal(r.links[0].url, "https://example.com/a?x=1&y=2");
    assert_string_equal(r.links[0].text, "click here now");
    assert_string_equal(r.text, "Go click here now please");
}

static void test_anchor_text_includes_image_alt(void **state)
{
    struct html_result r =
        test_extract(state, "<a href=\"x\"><img src=\"b.png\" alt=\"Buy now\"></a>"
                            "<a href=\"y\"></a><area href=\"z\" alt=\"area alt\">");

    assert_int_equal(r.n_links, 4);
    assert_string_equal(r.links[0].text, "Buy now");
    assert_null(r.links[1].text);
    assert_string_equal(r.links[1].tag, "img");
    assert_string_equal(r.links[2].text, "");
    assert_string_equal(r.links[3].tag, "area");
    assert_string_equal(r.links[3].text, "");
}

static void test_anchor_text_is_bounded(void **state)
{
    /* Three-byte characters: 1024 is not a multiple of 3, so a byte cut splits one. */
    char *inner = test_repeat("\xe2\x82\xac", 3000, "</a>");
    struct buf html = {0};
    struct html_result r;
    size_t text_len;

    buf_append_str(&html, "<a href=\"u\">");
    buf_append_str(&html, inner);
    r = test_extract(state, html.data);
    assert_int_equal(r.n_links, 1);
    text_len = strlen(r.links[0].text);
    assert_true(text_len <= 1024 && text_len >= 1000);
    assert_true(utf8_valid(r.links[0].text, text_len));
    assert_int_equal(r.text_len, 9000);
    free(inner);
    buf_free(&html);
}

static void test_links_are_in_document_order(void **state)
{
    struct html_result r = test_extract(
        state, "<html><head><link rel=stylesheet href=\"s.css\"></head>"
               "<body background=\"bg.jpg\"><img src=\"1.png\"><img alt=\"no src\">"
               "<form action=\"/post\"><input type=image src=\"btn.png\"></form>"
               "<iframe src=\"frame.html\"></iframe><a href=\"\">empty</a><a name=\"n\">x</a>"
               "<a href=\"last\">last</a></body></html>");
    static const char *const tags[] = {"link", "body", "img", "form", "input", "iframe", "a"};
    static const char *const urls[] = {"s.css",   "bg.jpg",     "1.png", "/post",
                                       "btn.png", "frame.html", "last"};
    size_t i;

    assert_int_equal(r.n_links, 7);
    for (i = 0; i < r.n_links; i++) {
        assert_string_equal(r.links[i].tag, tags[i]);
        assert_string_equal(r.links[i].url, urls[i]);
    }
    assert_int_equal(r.n_images, 2);
    assert_true(r.flags & HTML_F_FORM);
    assert_true(r.flags & HTML_F_IFRAME);
    assert_int_equal(r.flags & HTML_F_SCRIPT, 0);
}

static void test_frame_sets_iframe_flag(void **state)
{
    struct html_result r = test_extract(state, "<frameset><frame src=\"a.html\"></frameset>");

    assert_true(r.flags & HTML_F_IFRAME);
    assert_int_equal(r.n_links, 1);
    assert_string_equal(r.links[0].tag, "frame");
}

static void test_link_count_is_bounded(void **state)
{
    char *html = test_repeat("<a href=\"http://x.example/\">x</a>", HTML_MAX_LINKS + 500,
                             "<a href=\"late\">late</a>");
    struct html_result r = test_extract(state, html);

    assert_int_equal(r.n_links, HTML_MAX_LINKS);
    assert_string_equal(r.links[HTML_MAX_LINKS - 1].url, "http://x.example/");
    assert_string_equal(r.links[HTML_MAX_LINKS - 1].text, "x");
    free(html);
}

/* ---- images ---- */

static void test_img_alt_is_visible_text(void **state)
{
    struct html_result r = test_extract(
        state, "see<img src=a.png alt=\"Photo\">now <img alt=\"gone\" style=\"display:none\">");

    assert_string_equal(r.text, "see Photo now");
    assert_string_equal(r.hidden, "gone");
    assert_int_equal(r.n_images, 2);
}

/* ---- broken and hostile input ---- */

static void test_well_formed_html_is_not_flagged_broken(void **state)
{
    struct html_result r = test_extract(state, "<html><body><p>fine</p></body></html>");

    assert_int_equal(r.flags & HTML_F_BROKEN, 0);
}

static void test_parser_errors_set_broken_flag(void **state)
{
    struct html_result r = test_extract(state, "<p><b>x</p></i><a href='y>z");

    assert_true(r.flags & HTML_F_BROKEN);
}

static void test_parser_errors_do_not_reach_stderr(void **state)
{
    char path[] = "/tmp/test_html_stderr_XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    off_t size;

    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    test_extract(state, "<p><b>x</p></i><a href='y>z &#xZZ; <<<>>> </div></div> \xff<!-- ");
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    size = lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);
    assert_int_equal(size, 0);
}

static void test_stray_end_tags_never_unbalance_styles(void **state)
{
    struct html_result r = test_extract(
        state, "</div></span></p>a<div style=\"display:none\">h</span></p></td></div></div>"
               "</div></body></html>b<span style=\"font-size:0\">c</div></span>d");

    assert_string_equal(r.text, "a\nbd");
    assert_string_equal(r.hidden, "h\nc");
}

static void test_deep_nesting_is_bounded(void **state)
{
    char *html = test_repeat("<div>", 100000, "deep text");
    double start = test_now_seconds();
    struct html_result r = test_extract(state, html);

    assert_true(test_now_seconds() - start < TEST_HTML_MAX_SECONDS);
    assert_string_equal(r.text, "deep text");
    assert_true(r.flags & HTML_F_DEEP);
    free(html);
}

static void test_deep_zero_font_nesting_stays_hidden(void **state)
{
    char *html = test_repeat("<font style=\"font-size:0\">", 100000, "secret");
    double start = test_now_seconds();
    struct html_result r = test_extract(state, html);

    assert_true(test_now_seconds() - start < TEST_HTML_MAX_SECONDS);
    assert_string_equal(r.text, "");
    assert_string_equal(r.hidden, "secret");
    assert_true(r.flags & HTML_F_DEEP);
    free(html);
}

static void test_hidden_style_beyond_max_depth_is_applied(void **state)
{
    char *opening = test_repeat("<div>", HTML_MAX_DEPTH + 50,
                                "<span style=\"display:none\">x<b style=\"display:inline\">y</b>"
                                "</span>z<a href=\"deep\">link text</a><script>s</script>w");
    struct html_result r = test_extract(state, opening);

    assert_string_equal(r.hidden, "xy");
    assert_string_equal(r.text, "zlink textw");
    assert_int_equal(r.n_links, 1);
    assert_string_equal(r.links[0].text, "link text");
    assert_true(r.flags & HTML_F_DEEP);
    assert_true(r.flags & HTML_F_SCRIPT);
    free(opening);
}

static void test_styles_recover_after_leaving_deep_nesting(void **state)
{
    char *opening = test_repeat("<div style=\"color:red\">", HTML_MAX_DEPTH + 10, "red");
    char *closing = test_repeat("</div>", HTML_MAX_DEPTH + 10, "<font color=white>w</font>");
    char *html = test_repeat(opening, 1, closing);
    struct html_result r = test_extract(state, html);

    assert_string_equal(r.text, "red");
    assert_string_equal(r.hidden, "w");
    free(opening);
    free(closing);
    free(html);
}

static void test_stray_end_tags_after_deep_nesting_take_bounded_time(void **state)
{
    /* libxml2 searches its whole element stack for each stray end tag. */
    char *opening = test_repeat("<div>", 100000, "x");
    char *stray = test_repeat("</span>", 100000, "tail");
    char *html = test_repeat(opening, 1, stray);
    double start = test_now_seconds();
    struct html_result r = test_extract(state, html);

    assert_true(test_now_seconds() - start < TEST_HTML_MAX_SECONDS);
    assert_true(r.flags & HTML_F_BROKEN);
    assert_true(r.flags & HTML_F_DEEP);
    assert_string_equal(r.text, "x");
    free(opening);
    free(stray);
    free(html);
}

static void test_many_stray_end_tags_take_bounded_time(void **state)
{
    char *html = test_repeat("</x>", 300000, "tail");
    double start = test_now_seconds();
    struct html_result r = test_extract(state, html);

    assert_true(test_now_seconds() - start < TEST_HTML_MAX_SECONDS);
    assert_string_equal(r.text, "tail");
    assert_true(r.flags & HTML_F_BROKEN);
    free(html);
}

static void test_huge_attributes_are_kept_whole(void **state)
{
    char *url = test_repeat("a", 5 * 1024 * 1024, "");
    char *alt = test_repeat("b", 1024 * 1024, "");
    struct buf b = {0};
    struct html_result r;

    buf_append_str(&b, "<a href=\"http://");
    buf_append_str(&b, url);
    buf_append_str(&b, "\">text</a><img src=\"x\" alt=\"");
    buf_append_str(&b, alt);
    buf_append_str(&b, "\">");
    r = test_extract(state, b.data);
    assert_int_equal(r.n_links, 2);
    assert_int_equal(strlen(r.links[0].url), 7 + strlen(url));
    assert_string_equal(r.links[0].text, "text");
    assert_int_equal(r.text_len, 5 + strlen(alt));
    free(url);
    free(alt);
    buf_free(&b);
}

static void test_visible_text_is_capped(void **state)
{
    /* Three-byte characters: the cap must not cut one in half. */
    char *html = test_repeat("<p>\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac</p>", 600000, "");
    struct html_result r = test_extract(state, html);

    assert_true(r.text_len <= HTML_MAX_TEXT_BYTES);
    assert_true(r.text_len > HTML_MAX_TEXT_BYTES - 16);
    free(html);
}

static void test_unterminated_constructs_do_not_crash(void **state)
{
    static const char *const inputs[] = {
        "<a href=\"never closed",
        "<!-- never closed",
        "<![CDATA[ x",
        "<style>p{}",
        "<title>t",
        "<",
        "</",
        "<a",
        "&",
        "&#",
        "&#x",
        "<p style=\"font-size:",
        "<p style=\"color:rgb(1,2",
        "<font size=\"+\">x",
        "<p style=\";;:;color:;:red;font-size:-3px;font:\">x</p>",
        "<?xml version=\"1.0\"?><!DOCTYPE html><p>x",
    };
    size_t i;

    for (i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        test_extract(state, inputs[i]);
}

struct test_thread_arg {
    const char *html;
    const char *expect_text;
    const char *expect_hidden;
    int failures;
};

static void *test_thread_main(void *p)
{
    struct test_thread_arg *arg = p;
    int i;

    for (i = 0; i < 300; i++) {
        struct arena *a = arena_new(0);
        struct html_result r;
        html_extract(a, arg->html, strlen(arg->html), &r);
        if (strcmp(r.text, arg->expect_text) != 0 || strcmp(r.hidden, arg->expect_hidden) != 0 ||
            r.n_links != 1)
            arg->failures++;
        arena_free(a);
    }
    return NULL;
}

static void test_concurrent_extraction_gives_the_same_results(void **state)
{
    struct test_thread_arg args[4] = {
        {"<p>one<span style=\"display:none\">h1</span></p><a href=\"u\">l</a>", "one\nl", "h1", 0},
        {"<meta charset=latin1><b>caf\xc3\xa9</b><font size=0>h2</font><img src=i>", "caf\xc3\xa9",
         "h2", 0},
        {"<div><div>three</div></div></span><font color=white>h3</font><form action=f>", "three",
         "h3", 0},
        {"<table bgcolor=black><tr><td>h4</td></tr></table><area href=a>four", "four", "h4", 0},
    };
    pthread_t threads[4];
    size_t i;

    (void)state;
    for (i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, test_thread_main, &args[i]), 0);
    for (i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define HTML_TEST(fn) cmocka_unit_test_setup_teardown(fn, test_setup, test_teardown)
        HTML_TEST(test_empty_input_gives_empty_results),
        HTML_TEST(test_blocks_are_separated_by_one_newline),
        HTML_TEST(test_table_cells_are_separated),
        HTML_TEST(test_inline_elements_do_not_split_words),
        HTML_TEST(test_whitespace_is_collapsed),
        HTML_TEST(test_entities_are_decoded),
        HTML_TEST(test_broken_entities_do_not_break_text),
        HTML_TEST(test_script_text_is_skipped),
        HTML_TEST(test_style_title_and_comments_are_skipped),
        HTML_TEST(test_unclosed_script_hides_the_rest),
        HTML_TEST(test_text_in_head_is_visible),
        HTML_TEST(test_meta_charset_is_ignored),
        HTML_TEST(test_meta_http_equiv_charset_is_ignored),
        HTML_TEST(test_nul_bytes_become_spaces),
        HTML_TEST(test_invalid_utf8_is_repaired),
        HTML_TEST(test_zero_font_text_is_hidden),
        HTML_TEST(test_small_readable_font_is_visible),
        HTML_TEST(test_display_none_text_is_hidden),
        HTML_TEST(test_visibility_visible_reveals_but_display_none_does_not),
        HTML_TEST(test_white_on_white_is_hidden),
        HTML_TEST(test_text_matching_its_background_is_hidden),
        HTML_TEST(test_contrasting_colours_are_visible),
        HTML_TEST(test_background_image_makes_light_text_visible),
        HTML_TEST(test_styles_inherit_until_the_element_closes),
        HTML_TEST(test_hidden_text_between_visible_words_joins_them),
        HTML_TEST(test_hidden_chars_counts_non_space_code_points),
        HTML_TEST(test_anchor_text_is_collected),
        HTML_TEST(test_anchor_text_includes_image_alt),
        HTML_TEST(test_anchor_text_is_bounded),
        HTML_TEST(test_links_are_in_document_order),
        HTML_TEST(test_frame_sets_iframe_flag),
        HTML_TEST(test_link_count_is_bounded),
        HTML_TEST(test_img_alt_is_visible_text),
        HTML_TEST(test_well_formed_html_is_not_flagged_broken),
        HTML_TEST(test_parser_errors_set_broken_flag),
        HTML_TEST(test_parser_errors_do_not_reach_stderr),
        HTML_TEST(test_stray_end_tags_never_unbalance_styles),
        HTML_TEST(test_deep_nesting_is_bounded),
        HTML_TEST(test_deep_zero_font_nesting_stays_hidden),
        HTML_TEST(test_hidden_style_beyond_max_depth_is_applied),
        HTML_TEST(test_styles_recover_after_leaving_deep_nesting),
        HTML_TEST(test_stray_end_tags_after_deep_nesting_take_bounded_time),
        HTML_TEST(test_many_stray_end_tags_take_bounded_time),
        HTML_TEST(test_huge_attributes_are_kept_whole),
        HTML_TEST(test_visible_text_is_capped),
        HTML_TEST(test_unterminated_constructs_do_not_crash),
        HTML_TEST(test_concurrent_extraction_gives_the_same_results),
#undef HTML_TEST
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
