-- pandoc Lua filter: docs/*.md as man pages (pandoc -s -t man), built by docs/meson.build.
--  - "# NAME(SECTION)" at the top gives .TH's title and section; "##" headings
--    become the page's sections (.SH), "###" subsections (.SS).
--  - Tables become definition lists: tbl tables wider than a terminal make
--    man warn, and a page is read at 80 columns.
--  - Long inline code gets break points after , / = & | and the text is set
--    ragged-right without hyphenation (.ad l, .nh), so that a line of code with no space in it neither
--    overflows nor has to be stretched ("cannot adjust line").

local function title(doc)
  local first = doc.blocks[1]
  if first and first.t == 'Header' and first.level == 1 then
    local name, sec = pandoc.utils.stringify(first):match('^(%S+)%((%w+)%)$')
    if name then
      doc.meta.title = name
      doc.meta.section = sec
      doc.blocks:remove(1)
    end
  end
  doc.blocks:insert(1, pandoc.RawBlock('man', '.ad l\n.nh'))
  return doc
end

local function header(h)
  h.level = math.max(1, h.level - 1)
  return h
end

local function cell_blocks(cell)
  return cell.contents or cell[5] or {}
end

local function table_to_list(tbl)
  local head = {}
  if tbl.head and tbl.head.rows and tbl.head.rows[1] then
    for _, c in ipairs(tbl.head.rows[1].cells) do
      table.insert(head, pandoc.utils.stringify(cell_blocks(c)))
    end
  end
  local items = {}
  for _, body in ipairs(tbl.bodies) do
    for _, row in ipairs(body.body) do
      local cells = row.cells
      local term = pandoc.utils.blocks_to_inlines(cell_blocks(cells[1]))
      local defs = {}
      for i = 2, #cells do
        local inl = pandoc.utils.blocks_to_inlines(cell_blocks(cells[i]))
        if #cells > 2 and head[i] and head[i] ~= '' then
          inl:insert(1, pandoc.Space())
          inl:insert(1, pandoc.Strong({ pandoc.Str(head[i] .. ':') }))
        end
        table.insert(defs, pandoc.Para(inl))
      end
      table.insert(items, { term, { defs } })
    end
  end
  return pandoc.DefinitionList(items)
end

local function code(c)
  if #c.text <= 30 then
    return nil
  end
  local out = pandoc.List()
  local piece = ''
  for ch in c.text:gmatch('.') do
    piece = piece .. ch
    if ch:match('[,/=&|]') and #piece > 1 then
      out:insert(pandoc.Code(piece))
      out:insert(pandoc.RawInline('man', '\\:'))
      piece = ''
    end
  end
  if piece ~= '' then
    out:insert(pandoc.Code(piece))
  end
  return out
end

return {
  { Pandoc = title },
  { Header = header, Table = table_to_list, Code = code },
}
